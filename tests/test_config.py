"""Settings: a TOML file, then AGENTMEM_* variables, then flags; every bad value named."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

from agentmem.config import Config, config_file
from agentmem.config.settings import OTHER_VARIABLES, parse_size


def test_a_config_file_sets_fields_and_the_environment_overrides_it(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('hot_budget_bytes = "2G"\nwarm_budget_bytes = 1048576\ndurable_sync = false\n')
    cfg = Config.from_file(str(path))
    assert (cfg.hot_budget_bytes, cfg.warm_budget_bytes, cfg.durable_sync) == (
        2 << 30,
        1 << 20,
        False,
    )
    over = Config.from_env({"AGENTMEM_HOT_BUDGET_BYTES": "4096"}, base=cfg)
    assert over.hot_budget_bytes == 4096 and over.warm_budget_bytes == 1 << 20


def test_environment_values_are_parsed_like_the_file_and_bad_ones_named() -> None:
    cfg = Config.from_env(
        {
            "AGENTMEM_HOT_BUDGET_BYTES": "2G",
            "AGENTMEM_DURABLE_SYNC": "Off",
            "AGENTMEM_ZSTD_LEVEL": "4",
        }
    )
    assert (cfg.hot_budget_bytes, cfg.durable_sync, cfg.zstd_level) == (2 << 30, False, 4)
    assert Config.from_env({"AGENTMEM_DURABLE_SYNC": " yes "}).durable_sync is True
    # A word that is neither true nor false is an error, never a quiet False (relaxed syncs).
    for name, raw in [
        ("AGENTMEM_DURABLE_SYNC", "strict"),
        ("AGENTMEM_ZSTD_LEVEL", "high"),
        ("AGENTMEM_HOT_BUDGET_BYTES", "lots"),
    ]:
        with pytest.raises(ValueError, match=f"{name}='{raw}'"):
            Config.from_env({name: raw})


def test_an_unknown_agentmem_variable_is_refused_and_named() -> None:
    # A misspelt budget would otherwise not apply, silently (the file refuses its unknown keys).
    with pytest.raises(
        ValueError,
        match=r"AGENTMEM_HOT_BUDGET is not an agentmem setting "
        r"\(did you mean AGENTMEM_HOT_BUDGET_BYTES\?\)",
    ):
        Config.from_env({"AGENTMEM_HOT_BUDGET": "2G"})
    with pytest.raises(ValueError, match=r"^AGENTMEM_XYZZY is not an agentmem setting$"):
        Config.from_env({"AGENTMEM_XYZZY": "1"})
    # The variables read elsewhere are not settings, and not refused; others' are left alone.
    other = {name: "x" for name in OTHER_VARIABLES} | {"PATH": "/bin", "AGENTMEMX": "1"}
    assert Config.from_env(other) == Config()


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("hot_budget = 1\n", r"unknown setting 'hot_budget' \(did you mean hot_budget_bytes\?\)$"),
        ("xyzzy = 1\n", "unknown setting 'xyzzy'$"),
        ("durable_sync = 1\n", "durable_sync must be true or false"),
        ('zstd_level = "high"\n', "zstd_level must be an integer"),
        ("zstd_level = 99\n", "zstd levels must be 1..22"),
        ("hot_budget_bytes = \n", "config file"),
        ('hot_budget_bytes = "lots"\n', "not a size"),
    ],
)
def test_bad_config_files_are_named(tmp_path: pathlib.Path, text: str, error: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=error):
        Config.from_file(str(path))


def test_the_default_config_file_is_found_only_when_it_exists(tmp_path: pathlib.Path) -> None:
    env = {"XDG_CONFIG_HOME": str(tmp_path)}
    assert config_file(env) is None
    (tmp_path / "agentmem").mkdir()
    (tmp_path / "agentmem" / "config.toml").write_text("")
    assert config_file(env) == str(tmp_path / "agentmem" / "config.toml")
    assert config_file({"AGENTMEM_CONFIG": "/x.toml"}) == "/x.toml"


def test_sizes() -> None:
    assert [parse_size(s) for s in ("0", "1k", "1.5M", "2GiB", "3g")] == [
        0,
        1024,
        3 << 19,
        2 << 30,
        3 << 30,
    ]
    for bad in ("", "-1", "G", "1X"):
        with pytest.raises(ValueError, match="size"):
            parse_size(bad)


def test_the_daemon_refuses_a_bad_config_file(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("no_such_setting = 1\n")
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "agentmem",
            "daemon",
            "--config",
            str(path),
            "--socket",
            str(tmp_path / "s"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 2 and "unknown setting 'no_such_setting'" in out.stderr
