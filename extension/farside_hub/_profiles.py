"""Environment profiles: what a user picks on the spawn page, and farside's defaults with it.

A profile sets environment variables of the single-user server. Besides anything a site
needs, they carry the defaults the farside client uses for jobs and clusters, read by
:mod:`farside._profile`: ``FARSIDE_DEFAULT_ENV`` (the environment jobs ask for) and
``FARSIDE_DEFAULT_GPUS`` (GPUs per job), and ``FARSIDE_PROFILE`` (the profile's name).

The options form works with any spawner (it is plain ``options_form`` /
``options_from_form``), unlike KubeSpawner's ``profile_list``.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

PROFILE = "FARSIDE_PROFILE"
DEFAULT_ENV = "FARSIDE_DEFAULT_ENV"
DEFAULT_GPUS = "FARSIDE_DEFAULT_GPUS"


@dataclass(frozen=True)
class Profile:
    """One choice on the spawn page.

    ``slug`` names it in forms and URLs; ``env`` is the farside environment jobs ask for by
    default (one a site lists in ``environments``; None: any); ``gpus`` the GPUs per job by
    default; ``environment`` extra variables for the server. ``image`` is the server's
    container image where the spawner runs images (KubeSpawner: the chart's notebook-cpu,
    notebook-ml, notebook-gpu); spawners without images ignore it. On such a spawner a
    profile with ``gpus`` also gives the server that many GPUs.
    """

    slug: str
    display_name: str
    description: str = ""
    env: str | None = None
    gpus: int = 0
    environment: Mapping[str, str] = field(default_factory=dict)
    image: str | None = None

    def server_environment(self) -> dict[str, str]:
        variables = {PROFILE: self.slug, DEFAULT_GPUS: str(self.gpus)}
        if self.env is not None:
            variables[DEFAULT_ENV] = self.env
        return {**variables, **self.environment}


DEFAULT_PROFILES: tuple[Profile, ...] = (
    Profile("cpu", "CPU", "Jobs run on CPU slots of any environment."),
    Profile("ml", "ML", "Jobs run in the `ml` environment (a site must offer it).", env="ml"),
    Profile(
        "ml-gpu",
        "ML + GPU",
        "Jobs run in the `ml` environment with one GPU each.",
        env="ml",
        gpus=1,
    ),
)


def options_form(profiles: Sequence[Profile]) -> str:
    """The spawn page's form: one radio button per profile, the first one chosen."""
    rows = []
    for i, p in enumerate(profiles):
        slug, name = html.escape(p.slug, quote=True), html.escape(p.display_name)
        checked = " checked" if i == 0 else ""
        rows.append(
            f'<div class="radio"><label for="profile-{slug}">'
            f'<input type="radio" name="profile" id="profile-{slug}" value="{slug}"{checked}> '
            f"<strong>{name}</strong> {html.escape(p.description)}</label></div>"
        )
    return '<div class="form-group"><p>Environment profile</p>' + "".join(rows) + "</div>"


def options_from_form(formdata: Mapping[str, list[str]]) -> dict[str, Any]:
    """The user's choice as ``user_options`` (what the REST API takes as well)."""
    chosen = formdata.get("profile") or [""]
    return {"profile": chosen[0]}


def pick(profiles: Sequence[Profile], user_options: Mapping[str, Any]) -> Profile:
    """The profile ``user_options`` names, the first one if it names none; ValueError for a
    name that is not offered (a hand-made REST request), so the spawn fails saying so."""
    slug = user_options.get("profile") or profiles[0].slug
    for profile in profiles:
        if profile.slug == slug:
            return profile
    offered = ", ".join(p.slug for p in profiles)
    raise ValueError(f"there is no profile {slug!r}; choose one of {offered}")
