"""The spawn hook applies a profile: its variables on every spawner, its image and GPUs on
spawners that run images (KubeSpawner's traits), nothing of those on the others."""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any

import pytest

pytest.importorskip("jupyterhub")

from farside_hub import Profile
from farside_hub._config import _profile_hook

PROFILES = (
    Profile("cpu", "CPU", image="reg/notebook-cpu:1"),
    Profile("gpu", "GPU", env="ml", gpus=2, image="reg/notebook-gpu:1"),
    Profile("plain", "Plain"),
)


def spawner(choice: str, **traits: Any) -> SimpleNamespace:
    return SimpleNamespace(
        user_options={"profile": choice},
        user=SimpleNamespace(name="alice"),
        log=logging.getLogger("test"),
        environment={"KEEP": "1"},
        **traits,
    )


def test_an_image_spawner_gets_the_profiles_image_and_gpus() -> None:
    s = spawner("gpu", image="default", extra_resource_limits={"example.org/fpga": "1"})
    _profile_hook(PROFILES)(s)
    assert s.image == "reg/notebook-gpu:1"
    assert s.extra_resource_limits == {"example.org/fpga": "1", "nvidia.com/gpu": "2"}
    assert s.environment["FARSIDE_DEFAULT_GPUS"] == "2"
    assert s.environment["FARSIDE_DEFAULT_ENV"] == "ml"
    assert s.environment["KEEP"] == "1"


def test_a_profile_without_an_image_keeps_the_spawners() -> None:
    s = spawner("plain", image="default", extra_resource_limits={})
    _profile_hook(PROFILES)(s)
    assert s.image == "default"
    assert s.extra_resource_limits == {}


def test_a_process_spawner_has_no_image_to_set() -> None:
    s = spawner("cpu")
    _profile_hook(PROFILES)(s)
    assert not hasattr(s, "image")
    assert s.environment["FARSIDE_PROFILE"] == "cpu"
