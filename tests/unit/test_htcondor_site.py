"""The htcondor site without HTCondor: rendering, parsing, and the commands it runs (against
fake condor_* tools that print canned answers and record their arguments)."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pytest

from farside_gateway.config import SiteConfig
from farside_gateway.sites.base import BatchState, BatchStatus, SubmitError, load_site
from farside_gateway.sites.htcondor import (
    HTCondorOptions,
    HTCondorSite,
    ad_status,
    parse_ads,
    parse_submitted,
    submit_description,
)
from farside_protocol import ConfigurationError


def _site(tmp_path: Path, options: dict[str, Any] | None = None, **config: Any) -> HTCondorSite:
    settings = {"memory": "2 GiB", **config}
    cfg = SiteConfig(name="pool", plugin="htcondor", options=options or {}, **settings)
    return HTCondorSite(config=cfg, gateway_url="http://gw:1", state_dir=tmp_path / "state")


def _fake_tools(tmp_path: Path, answers: dict[str, tuple[int, str]]) -> Path:
    """condor_* scripts in a directory: each records its arguments and prints its answer."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("condor_submit", "condor_q", "condor_history", "condor_rm", "condor_status"):
        code, out = answers.get(tool, (0, ""))
        (bin_dir / f"{tool}.out").write_text(out)
        script = bin_dir / tool
        script.write_text(
            "#!/bin/sh\n"
            f'printf "%s\\n" "$*" >> "{bin_dir}/calls"\n'
            f'printf "%s" "$(cat "{bin_dir}/{tool}.out")"\n'
            f'[ {code} = 0 ] || echo "ERROR: {tool} says no" >&2\n'
            f"exit {code}\n"
        )
        script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return bin_dir


def _calls(bin_dir: Path) -> list[str]:
    path = bin_dir / "calls"
    return path.read_text().splitlines() if path.exists() else []


# ---------------------------------------------------------------- options


def test_loaded_by_its_entry_point_name(tmp_path: Path) -> None:
    cfg = SiteConfig(name="pool", plugin="htcondor")
    assert isinstance(load_site(cfg, "http://gw:1", tmp_path), HTCondorSite)


@pytest.mark.parametrize(
    ("options", "complaint"),
    [
        ({"bogus": 1}, "options.bogus"),
        ({"extra_submit": {"queue": "5"}}, "options.extra_submit"),
        ({"extra_submit": {"bad key": "x"}}, "options.extra_submit"),
        ({"extra_submit": {"arguments": "a\nqueue 9"}}, "one line"),
        ({"universe": "Vanilla Universe"}, "options.universe"),
        ({"vacate_time": -1}, "options.vacate_time"),
    ],
)
def test_bad_options_are_named(tmp_path: Path, options: dict[str, Any], complaint: str) -> None:
    with pytest.raises(ConfigurationError, match=complaint):
        _site(tmp_path, options)


# ---------------------------------------------------------------- rendering


def test_submit_description_of_a_plain_site(tmp_path: Path) -> None:
    site = _site(tmp_path, cores=2)
    launch = site.launch_for(7, "tok")
    text = submit_description(site, launch, launch.workdir / "pilot.sh")
    lines = text.splitlines()
    assert lines[-1] == "queue 1"
    assert "universe = vanilla" in lines
    assert f"executable = {launch.workdir / 'pilot.sh'}" in lines
    assert f"initialdir = {launch.workdir}" in lines
    assert f"output = {launch.log_path}" in lines
    assert "request_cpus = 2" in lines
    assert "request_memory = 2048" in lines  # MiB
    assert "job_max_vacate_time = 60" in lines
    assert '+FarsideSite = "pool"' in lines
    assert "+FarsidePilot = 7" in lines
    assert not any(
        line.startswith(("request_gpus", "requirements", "periodic_remove", "error"))
        for line in lines
    )


def test_submit_description_with_every_option(tmp_path: Path) -> None:
    site = _site(
        tmp_path,
        {
            "universe": "container",
            "requirements": '(OpSysAndVer == "AlmaLinux9")',
            "extra_submit": {"container_image": "/img.sif", "+ProjectName": '"phys"'},
            "vacate_time": 30,
        },
        gpus=1,
        walltime="2h",
        memory="1500 MB",
    )
    launch = site.launch_for(3, "tok")
    lines = submit_description(site, launch, Path("/x/pilot.sh")).splitlines()
    assert "universe = container" in lines
    assert "request_gpus = 1" in lines
    assert "request_memory = 1431" in lines  # 1.5e9 bytes, rounded up to MiB
    assert 'requirements = (OpSysAndVer == "AlmaLinux9")' in lines
    assert "job_max_vacate_time = 30" in lines
    assert "+MaxRuntime = 7200" in lines
    assert "periodic_remove = (JobStatus == 2) && (time() - JobCurrentStartDate > 7200)" in lines
    # the operator's lines come last, so they win over the plugin's
    assert lines[-3:] == ["container_image = /img.sif", '+ProjectName = "phys"', "queue 1"]


def test_pilot_script_sends_stderr_to_the_log_and_runs_the_prologue(tmp_path: Path) -> None:
    site = _site(
        tmp_path, {"prologue": "module load python", "pilot_command": ["/opt/py", "-m", "p"]}
    )
    script = site.render_script(site.launch_for(1, "tok"))
    lines = script.splitlines()
    assert lines[:2] == ["#!/bin/sh", "exec 2>&1"]
    assert "module load python" in lines
    assert lines[-1] == "exec /opt/py -m p"


def test_commands_carry_prefix_pool_and_schedd(tmp_path: Path) -> None:
    site = _site(
        tmp_path,
        {
            "bin_dir": "/opt/condor/bin",
            "command_prefix": ["sudo", "-n", "-u", "c"],
            "pool": "cm.example:9618",
            "schedd": "submit1",
        },
    )
    assert site.command("condor_q", "1.0") == [
        "sudo",
        "-n",
        "-u",
        "c",
        "/opt/condor/bin/condor_q",
        "-pool",
        "cm.example:9618",
        "-name",
        "submit1",
        "1.0",
    ]
    # condor_status has no -name for a schedd
    assert "-name" not in site.command("condor_status")


# ---------------------------------------------------------------- parsing


def test_parse_submitted() -> None:
    assert parse_submitted("12.0 - 12.0\n") == "12.0"
    with pytest.raises(SubmitError, match="no job id"):
        parse_submitted("Submitting job(s)\n")


def test_parse_ads() -> None:
    assert parse_ads("", "condor_q") == []
    assert parse_ads('[\n{"ClusterId": 3, "ProcId": 0}\n]\n', "condor_q") == [
        {"ClusterId": 3, "ProcId": 0}
    ]
    with pytest.raises(RuntimeError, match="no JSON"):
        parse_ads("-- Schedd: vm", "condor_q")


@pytest.mark.parametrize(
    ("ad", "in_queue", "expected"),
    [
        ({"JobStatus": 1}, True, BatchStatus(BatchState.QUEUED)),
        ({"JobStatus": 2}, True, BatchStatus(BatchState.RUNNING)),
        ({"JobStatus": 7}, True, BatchStatus(BatchState.RUNNING)),
        ({"JobStatus": 3, "RemoveReason": "via condor_rm"}, True, BatchStatus(BatchState.RUNNING)),
        (
            {"JobStatus": 3, "RemoveReason": "via condor_rm (by user x)"},
            False,
            BatchStatus(BatchState.GONE, "removed: via condor_rm (by user x)"),
        ),
        (
            {"JobStatus": 5, "HoldReason": "Error from slot1: no such file"},
            True,
            BatchStatus(BatchState.GONE, "held: Error from slot1: no such file"),
        ),
        (
            {"JobStatus": 4, "ExitCode": 0},
            False,
            BatchStatus(BatchState.GONE, "exited with code 0"),
        ),
        (
            {"JobStatus": 4, "ExitBySignal": True, "ExitSignal": 9},
            False,
            BatchStatus(BatchState.GONE, "killed by signal 9"),
        ),
    ],
)
def test_ad_status(ad: dict[str, Any], in_queue: bool, expected: BatchStatus) -> None:
    assert ad_status(ad, in_queue) == expected


# ---------------------------------------------------------------- commands (fake tools)


async def test_submit_writes_files_and_returns_the_job_id(tmp_path: Path) -> None:
    bin_dir = _fake_tools(tmp_path, {"condor_submit": (0, "41.0 - 41.0\n")})
    site = _site(tmp_path, {"bin_dir": str(bin_dir)})
    launch = site.launch_for(5, "tok")
    assert await site.submit(launch) == "41.0"
    assert _calls(bin_dir) == [f"-terse {launch.workdir / 'pilot.sub'}"]
    assert (launch.workdir / "pilot.sh").stat().st_mode & stat.S_IXUSR
    assert "FARSIDE_PILOT_TOKEN=tok" in (launch.workdir / "pilot.sh").read_text()


async def test_refused_submission_is_a_submit_error_with_condors_words(tmp_path: Path) -> None:
    bin_dir = _fake_tools(tmp_path, {"condor_submit": (1, "")})
    site = _site(tmp_path, {"bin_dir": str(bin_dir)})
    with pytest.raises(SubmitError, match="exited 1: ERROR: condor_submit says no"):
        await site.submit(site.launch_for(5, "tok"))


async def test_missing_tools_say_where_to_point(tmp_path: Path) -> None:
    site = _site(tmp_path, {"bin_dir": str(tmp_path / "nowhere")})
    with pytest.raises(SubmitError, match=r"options\.bin_dir"):
        await site.submit(site.launch_for(5, "tok"))
    with pytest.raises(ConfigurationError, match=r"options\.bin_dir"):
        await site.start()


async def test_start_fails_when_the_pool_does_not_answer(tmp_path: Path) -> None:
    bin_dir = _fake_tools(tmp_path, {"condor_status": (1, "")})
    site = _site(tmp_path, {"bin_dir": str(bin_dir)})
    with pytest.raises(ConfigurationError, match=r"does not answer.*scripts/htcondor.sh"):
        await site.start()


async def test_observe_asks_the_queue_then_the_history_and_removes_held(tmp_path: Path) -> None:
    queue = [
        {"ClusterId": 1, "ProcId": 0, "JobStatus": 1},
        {"ClusterId": 2, "ProcId": 0, "JobStatus": 2},
        {"ClusterId": 3, "ProcId": 0, "JobStatus": 5, "HoldReason": "disk full"},
    ]
    history = [{"ClusterId": 4, "ProcId": 0, "JobStatus": 3, "RemoveReason": "by admin"}]
    bin_dir = _fake_tools(
        tmp_path,
        {"condor_q": (0, json.dumps(queue)), "condor_history": (0, json.dumps(history))},
    )
    site = _site(tmp_path, {"bin_dir": str(bin_dir)})
    states = await site.observe(["1.0", "2.0", "3.0", "4.0", "5.0"])
    assert states == {
        "1.0": BatchStatus(BatchState.QUEUED),
        "2.0": BatchStatus(BatchState.RUNNING),
        "3.0": BatchStatus(BatchState.GONE, "held: disk full"),
        "4.0": BatchStatus(BatchState.GONE, "removed: by admin"),
    }  # 5.0 is in neither: left out, which counts as gone
    calls = _calls(bin_dir)
    assert calls[0].startswith("-json -attributes ")
    assert calls[0].endswith("1.0 2.0 3.0 4.0 5.0")
    assert calls[1].endswith("4.0 5.0 -limit 2")
    assert calls[2] == "3.0"  # condor_rm of the held pilot


async def test_observe_raises_when_the_queue_does_not_answer(tmp_path: Path) -> None:
    # "no answer" must not read as "no jobs": that would declare every pilot lost
    bin_dir = _fake_tools(tmp_path, {"condor_q": (1, "")})
    site = _site(tmp_path, {"bin_dir": str(bin_dir)})
    with pytest.raises(RuntimeError, match="condor_q exited 1"):
        await site.observe(["1.0"])


async def test_cancel_tolerates_a_job_already_gone(tmp_path: Path) -> None:
    bin_dir = _fake_tools(tmp_path, {"condor_rm": (1, "Job 9.0 not found\n")})
    site = _site(tmp_path, {"bin_dir": str(bin_dir)})
    await site.cancel("9.0")
    assert _calls(bin_dir) == ["9.0"]


def test_every_option_is_in_the_how_to() -> None:
    page = (Path(__file__).resolve().parents[2] / "docs" / "how-to" / "htcondor.md").read_text()
    for name, field in HTCondorOptions.model_fields.items():
        assert f"| `{name}` |" in page, f"docs/how-to/htcondor.md does not list option {name}"
        assert field.description, f"option {name} has no description"


async def test_stop_removes_live_pilots_then_forces_those_still_vacating(tmp_path: Path) -> None:
    running = [{"ClusterId": n, "ProcId": 0, "JobStatus": 2} for n in (7, 8)]
    bin_dir = _fake_tools(tmp_path, {"condor_q": (0, json.dumps(running))})
    site = _site(tmp_path, {"bin_dir": str(bin_dir), "stop_grace": 1})
    await site.observe(["7.0", "8.0"])  # how a restarted gateway learns its pilots
    # once removed, 8.0 leaves the queue; 7.0 stays removed-but-vacating past the grace
    vacating = [{"ClusterId": 7, "ProcId": 0, "JobStatus": 3}]
    (bin_dir / "condor_q.out").write_text(json.dumps(vacating))
    await site.stop()
    calls = _calls(bin_dir)
    assert {"7.0", "8.0"} <= set(calls)  # condor_rm of each: SIGTERM first
    assert calls[-1] == "-forcex 7.0"
    assert [c for c in calls if c.startswith("-forcex")] == ["-forcex 7.0"]
    await site.stop()  # nothing live is left to stop
    assert _calls(bin_dir) == calls
