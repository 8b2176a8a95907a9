"""The slurm site plugin without Slurm: options, scripts, parsing, and fake Slurm commands."""

from __future__ import annotations

import doctest
import stat
from pathlib import Path
from typing import Any

import pytest

from farside_gateway.config import SiteConfig
from farside_gateway.sites import slurm
from farside_gateway.sites.base import BatchState, BatchStatus, SubmitError, load_site
from farside_gateway.sites.batch_command import SiteCommandError, load_template
from farside_gateway.sites.slurm import SlurmSite
from farside_protocol import ConfigurationError


def make_site(tmp_path: Path, **site: Any) -> SlurmSite:
    config = SiteConfig.model_validate(
        {"name": "hpc", "plugin": "slurm", "cores": 4, "memory": "6 GiB", **site}
    )
    made = load_site(config, "http://gw:1", tmp_path / "state")
    assert isinstance(made, SlurmSite)
    return made


def fake_command(tmp_path: Path, name: str, body: str) -> str:
    """A shell script standing in for a Slurm command; it logs its arguments."""
    path = tmp_path / "bin" / name
    path.parent.mkdir(exist_ok=True)
    path.write_text(f'#!/bin/sh\necho "$0 $*" >> {tmp_path}/calls\n{body}\n')
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(path)


def test_doctests() -> None:
    assert doctest.testmod(slurm).failed == 0


def test_unknown_option_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"options\.partion"):
        make_site(tmp_path, options={"partion": "cpu"})


def test_header_carries_the_slot_and_the_options(tmp_path: Path) -> None:
    site = make_site(
        tmp_path,
        gpus=2,
        walltime="2h",
        options={"partition": "gpu", "account": "phys", "qos": "low", "prologue": "module load x"},
    )
    launch = site.launch_for(7, "tok")
    script = site.render_script(launch)
    assert script.startswith("#!/bin/sh\n#SBATCH --job-name=farside-hpc-7\n")
    for line in [
        f"#SBATCH --output={launch.log_path}",
        f"#SBATCH --chdir={launch.workdir}",
        "#SBATCH --cpus-per-task=4",
        "#SBATCH --mem=6144M",
        "#SBATCH --gres=gpu:2",
        "#SBATCH --time=0-02:00:00",
        "#SBATCH --partition=gpu",
        "#SBATCH --account=phys",
        "#SBATCH --qos=low",
    ]:
        assert line + "\n" in script
    # every #SBATCH line comes before the first command, or sbatch ignores it
    last_directive = script.rindex("#SBATCH")
    assert script.index("module load x") > last_directive
    assert "export FARSIDE_PILOT_TOKEN=tok\n" in script
    assert script.rstrip().splitlines()[-1].startswith("exec ")


def test_no_gres_or_time_when_the_site_has_none(tmp_path: Path) -> None:
    script = make_site(tmp_path).render_script(make_site(tmp_path).launch_for(1, "t"))
    for option in ("--gres", "--time", "--partition"):
        assert option not in script


async def test_template_replaces_the_built_in_script(tmp_path: Path) -> None:
    template = tmp_path / "pilot.tmpl"
    template.write_text("#!/bin/bash\n$header\n#SBATCH --exclusive\n$env\necho $$HOME\n$command\n")
    sbatch = fake_command(tmp_path, "sbatch", "echo 10000001")
    site = make_site(tmp_path, options={"template": str(template), "sbatch": sbatch})
    site._template = load_template(site.name, template)
    script = site.render_script(site.launch_for(3, "tok"))
    assert script.startswith("#!/bin/bash\n#SBATCH --job-name=farside-hpc-3\n")
    assert "#SBATCH --exclusive\nexport FARSIDE_GATEWAY_URL=http://gw:1\n" in script
    assert "echo $HOME\ncd " in script


def test_template_without_command_is_refused(tmp_path: Path) -> None:
    template = tmp_path / "pilot.tmpl"
    template.write_text("#!/bin/sh\n$header\n")
    with pytest.raises(ConfigurationError, match=r"no \$command"):
        load_template("hpc", template)
    with pytest.raises(ConfigurationError, match="cannot read"):
        load_template("hpc", tmp_path / "missing")


def test_squeue_states_map_onto_batch_states() -> None:
    out = (
        "11|PENDING|Resources\n12|RUNNING|None\n13|CANCELLED|None\n"
        "14|OUT_OF_MEMORY|OutOfMemory\n15|COMPLETING|None\n"
    )
    assert slurm.parse_squeue(out) == {
        "11": BatchStatus(BatchState.QUEUED),
        "12": BatchStatus(BatchState.RUNNING),
        "13": BatchStatus(BatchState.GONE, "CANCELLED"),
        "14": BatchStatus(BatchState.GONE, "OUT_OF_MEMORY: OutOfMemory"),
        "15": BatchStatus(BatchState.RUNNING),
    }
    assert slurm.parse_sacct("21|CANCELLED by 0\n21.batch|CANCELLED\n") == {
        "21": BatchStatus(BatchState.GONE, "CANCELLED by 0")
    }


async def test_submit_returns_the_job_id_and_refusals_raise(tmp_path: Path) -> None:
    ok = fake_command(tmp_path, "sbatch", "echo '10000042;cluster'")
    site = make_site(tmp_path, options={"sbatch": ok, "sbatch_args": ["--exclusive"]})
    launch = site.launch_for(5, "tok")
    assert await site.submit(launch) == "10000042"
    assert launch.log_path.with_suffix(".sbatch").read_text().startswith("#!/bin/sh\n#SBATCH")
    assert "--parsable --exclusive" in (tmp_path / "calls").read_text()

    refuse = fake_command(
        tmp_path,
        "sbatch-no",
        "echo 'sbatch: error: invalid partition specified: nope' >&2; exit 1",
    )
    site = make_site(tmp_path, options={"sbatch": refuse})
    with pytest.raises(SubmitError, match="invalid partition specified: nope"):
        await site.submit(site.launch_for(6, "tok"))


async def test_observe_unknown_ids_and_failures(tmp_path: Path) -> None:
    unknown = fake_command(
        tmp_path, "squeue", "echo 'slurm_load_jobs error: Invalid job id specified' >&2; exit 1"
    )
    sacct = fake_command(tmp_path, "sacct", "echo 'Slurm accounting storage is disabled'; exit 1")
    site = make_site(tmp_path, options={"squeue": unknown, "sacct": sacct})
    assert await site.observe(["1", "2"]) == {}
    assert await site.observe(["1"]) == {}
    # sacct is asked once, then known to be off
    assert (tmp_path / "calls").read_text().count("sacct") == 1

    broken = fake_command(tmp_path, "squeue-down", "echo 'Unable to contact slurm' >&2; exit 1")
    site = make_site(tmp_path, options={"squeue": broken})
    with pytest.raises(SiteCommandError, match="Unable to contact"):
        await site.observe(["1"])


async def test_cancel_signals_the_pilot_then_cancels_a_pending_job(tmp_path: Path) -> None:
    scancel = fake_command(
        tmp_path,
        "scancel",
        'case "$*" in *--signal*) echo "Job can not be altered now" >&2; exit 1;; esac',
    )
    site = make_site(tmp_path, options={"scancel": scancel})
    await site.cancel("10000009")
    calls = (tmp_path / "calls").read_text().splitlines()
    assert [c.split(" ", 1)[1] for c in calls] == ["--batch --signal=TERM 10000009", "10000009"]


async def test_start_names_missing_commands(tmp_path: Path) -> None:
    site = make_site(tmp_path, options={"sbatch": "/nonexistent/sbatch"})
    with pytest.raises(ConfigurationError, match="/nonexistent/sbatch"):
        await site.start()


def test_every_option_is_documented() -> None:
    page = (Path(__file__).resolve().parents[2] / "docs" / "how-to" / "slurm.md").read_text()
    for name, info in slurm.SlurmOptions.model_fields.items():
        assert f"`{name}`" in page, f"docs/how-to/slurm.md does not describe options.{name}"
        assert info.description, name
