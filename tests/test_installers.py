"""installers/install.sh in a clean home: menu entry, icon, commands, upgrade in place, uninstall.

The full install (PyTorch and every library from the network) takes minutes and gigabytes, so CI runs
the installer's offline mode: `--reuse-site-packages` points the new environment at this test run's
own site-packages and installs only the app itself, built from this checkout without network. Every
other step (the folder it picks, the manifest, the .desktop file and icon, the command links, the
uninstaller, what uninstall leaves) is the code a user runs. The full online install was checked by
hand (docs/benchmarks.md, "Installer").
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
INSTALL_SH = ROOT / "installers" / "install.sh"
INSTALL_PS1 = ROOT / "installers" / "install.ps1"

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux") or shutil.which("bash") is None,
                                reason="install.sh's Linux path (menu entry, XDG folders) is tested on Linux")


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("XDG_") and k not in ("PYTHONPATH", "VIRTUAL_ENV", "REPIC_LIBRARY",
                                                     "REPIC_CONFIG_DIR", "REPIC_CACHE_DIR")}
    env["HOME"] = str(home)
    # pip runs `rustc --version` for its user-agent string, and a rustup proxy then writes
    # ~/.rustup/settings.toml into the fresh home: that is rustup's file, not the installer's
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep)
                                  if not os.path.isfile(os.path.join(p, "rustup")))
    return env


def _install(home: Path, *extra: str) -> subprocess.CompletedProcess:
    site = sysconfig.get_paths()["purelib"]
    return subprocess.run(["bash", str(INSTALL_SH), "--yes", "--python", sys.executable,
                           "--reuse-site-packages", site, *extra],
                          env=_env(home), cwd=home, capture_output=True, text=True, timeout=600)


def _tree(home: Path) -> set[str]:
    """Every file, link and folder under home, relative."""
    out = set()
    for dirpath, dirnames, filenames in os.walk(home):
        for n in dirnames + filenames:
            out.add(str(Path(dirpath, n).relative_to(home)))
    return out


def _paths(home: Path):
    data = home / ".local" / "share" / "RePIC Desktop"
    return data, data / "app", data / "app" / "venv"


def _checkout_copy(dest: Path) -> Path:
    """The parts of this checkout that make the package, plus what an earlier in-tree build leaves:
    a build/lib with a module that has since been deleted from the source."""
    dest.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE", "requirements.txt"):
        shutil.copy2(ROOT / name, dest / name)
    for pkg in ("repic_desktop", "trainer"):
        shutil.copytree(ROOT / pkg, dest / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    stale = dest / "build" / "lib" / "repic_desktop" / "deleted_long_ago.py"
    stale.parent.mkdir(parents=True)
    stale.write_text("raise SystemExit('stale')\n")
    return dest


def test_install_menu_entry_and_uninstall_leaves_an_empty_home(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    src = _checkout_copy(tmp_path / "checkout")
    before = sorted(str(p.relative_to(src)) for p in src.rglob("*"))
    r = _install(home, "--source", str(src))
    assert r.returncode == 0, r.stdout + r.stderr
    data, app, venv = _paths(home)
    # built from a copy: nothing written into the checkout, and its stale build/lib is not installed
    assert sorted(str(p.relative_to(src)) for p in src.rglob("*")) == before
    assert not list(venv.rglob("deleted_long_ago.py"))

    # the commands work from the private environment, and run the app installed there
    v = subprocess.run([str(venv / "bin" / "repic"), "--version"], env=_env(home),
                       capture_output=True, text=True, timeout=120)
    assert v.returncode == 0 and v.stdout.startswith("repic "), v.stdout + v.stderr
    where = subprocess.run([str(venv / "bin" / "python"), "-c", "import repic_desktop; print(repic_desktop.__file__)"],
                           env=_env(home), cwd=home, capture_output=True, text=True, timeout=120)
    assert where.stdout.strip().startswith(str(venv)), where.stdout + where.stderr
    assert (home / ".local" / "bin" / "repic").resolve() == (venv / "bin" / "repic").resolve()
    assert (home / ".local" / "bin" / "repic-train").resolve() == (venv / "bin" / "repic-train").resolve()

    # the menu entry: the template filled in, pointing at this environment, with the hicolor icon
    desktop = home / ".local" / "share" / "applications" / "repic-desktop.desktop"
    text = desktop.read_text()
    assert "@" not in text
    fields = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    assert fields["Name"] == "RePIC Desktop"
    assert fields["Exec"] == f'"{venv}/bin/repic" gui %F'   # quoted: the data folder has a space
    assert fields["Icon"] == "repic-desktop"
    icon = home / ".local" / "share" / "icons" / "hicolor" / "scalable" / "apps" / "repic-desktop.svg"
    assert icon.read_bytes() == (ROOT / "resources" / "icons" / "repic-desktop.svg").read_bytes()
    # and the copy the running app finds (gui/app.py's icon_path: <prefix>/share/repic-desktop/icons)
    assert (venv / "share" / "repic-desktop" / "icons" / "repic-desktop.svg").is_file()
    if shutil.which("desktop-file-validate"):
        val = subprocess.run(["desktop-file-validate", str(desktop)], capture_output=True, text=True)
        assert val.returncode == 0, val.stdout + val.stderr

    # the uninstaller it put beside the environment removes everything it made, folders included
    u = subprocess.run([str(app / "uninstall.sh"), "--yes"], env=_env(home), cwd=home, capture_output=True, text=True,
                       timeout=120)
    assert u.returncode == 0, u.stdout + u.stderr
    assert _tree(home) == set()


def test_reinstall_upgrades_in_place_and_uninstall_keeps_the_users_data(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / ".local" / "bin").mkdir(parents=True)
    (home / ".local" / "bin" / "mytool").write_text("#!/bin/sh\n")   # the user's own, before us
    assert _install(home).returncode == 0
    data, app, venv = _paths(home)

    # what a user has after a while: a library, its reference photos and adapters, the demo model,
    # downloaded models, settings and thumbnails
    user_files = {
        data / "library.sqlite": b"SQLite format 3\x00",
        data / "library-files" / "references" / "anya.jpg": b"\xff\xd8\xff",
        data / "library-files" / "adapters" / "family" / "adapter_model.safetensors": b"lora",
        data / "demo-model" / "config.json": b"{}",
        home / ".cache" / "huggingface" / "hub" / "models--x" / "model.safetensors": b"w",
        home / ".config" / "RePIC Desktop" / "settings.json": b'{"model": "x"}',
        home / ".cache" / "RePIC Desktop" / "thumbnails" / "1.jpg": b"\xff\xd8\xff",
    }
    for p, b in user_files.items():
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b)

    # an upgrade rewrites the app in place: a file damaged in the old install comes back
    installed = Path(subprocess.run([str(venv / "bin" / "python"), "-c",
                                     "import repic_desktop.cli.app as m; print(m.__file__)"],
                                    env=_env(home), cwd=home, capture_output=True, text=True).stdout.strip())
    assert installed.is_relative_to(venv)
    installed.write_text("raise SystemExit('old build')\n")
    r = _install(home)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "upgrades it in place" in r.stdout
    v = subprocess.run([str(venv / "bin" / "repic"), "--version"], env=_env(home), cwd=home, capture_output=True,
                       text=True, timeout=120)
    assert v.returncode == 0 and v.stdout.startswith("repic "), v.stdout + v.stderr
    for p, b in user_files.items():
        assert p.read_bytes() == b, p

    u = subprocess.run(["bash", str(INSTALL_SH), "--uninstall", "--yes"], env=_env(home), cwd=home, capture_output=True,
                       text=True, timeout=120)
    assert u.returncode == 0, u.stdout + u.stderr
    kept = {str(p.relative_to(home)) for p in user_files} | {".local/bin/mytool"}
    # what is left: the user's files and the folders that hold them, nothing else
    expected = set(kept)
    for k in kept:
        expected |= {str(p) for p in Path(k).parents if str(p) != "."}
    assert _tree(home) == expected
    assert not app.exists()

    # uninstall again: nothing to do, says so
    again = subprocess.run(["bash", str(INSTALL_SH), "--uninstall", "--yes"], env=_env(home),
                           capture_output=True, text=True, timeout=60)
    assert again.returncode == 0 and "not installed" in again.stdout


def test_bad_options_are_refused_before_anything_is_made(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    for args, needle in ((["--torch", "rocm"], "--torch must be auto, cpu, cuda or mps"),
                         (["--torch", "mps"], "Apple silicon only"),
                         (["--frobnicate"], "unknown option"),
                         (["--python", "/nonexistent/python3"], "is not Python 3.10 or newer")):
        r = subprocess.run(["bash", str(INSTALL_SH), "--yes", *args], env=_env(home), cwd=home, capture_output=True,
                           text=True, timeout=60)
        assert r.returncode != 0 and needle in r.stderr, (args, r.stderr)
    assert _tree(home) == set()


def test_without_a_terminal_and_without_yes_it_asks_for_yes(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    r = subprocess.run(["bash", str(INSTALL_SH), "--python", sys.executable, "--reuse-site-packages",
                        sysconfig.get_paths()["purelib"]], env=_env(home), cwd=home, stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "--yes" in r.stderr
    assert _tree(home) == set()


def test_torch_choice_is_shown_and_overridable(tmp_path):
    """The plan it prints before asking: run without a terminal, so it stops at the question."""
    home = tmp_path / "home"
    home.mkdir()
    r = subprocess.run(["bash", str(INSTALL_SH), "--python", sys.executable, "--torch", "cpu"],
                       env=_env(home), cwd=home, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert "PyTorch:     cpu (CPU-only build" in r.stdout and "download.pytorch.org/whl/cpu" in r.stdout
    assert "--torch cpu|cuda|mps" in r.stdout
    env = _env(home) | {"REPIC_TORCH_SPEC": "torch==2.13.0"}
    r = subprocess.run(["bash", str(INSTALL_SH), "--python", sys.executable], env=env,
                       stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert "torch==2.13.0 as given" in r.stdout
    assert _tree(home) == set()


def test_an_nvidia_gpu_picks_the_cuda_build_and_an_old_driver_is_named(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    fake = tmp_path / "bin"
    fake.mkdir()
    smi = fake / "nvidia-smi"
    for driver, old in (("535.104.05", True), ("580.65.06", False)):
        smi.write_text(f"#!/bin/sh\necho 'NVIDIA GeForce RTX 3060, {driver}, 12288 MiB'\n")
        smi.chmod(0o755)
        env = _env(home)
        env["PATH"] = f"{fake}{os.pathsep}{env['PATH']}"
        r = subprocess.run(["bash", str(INSTALL_SH), "--python", sys.executable], env=env, cwd=home,
                           stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
        assert "NVIDIA GPU found: NVIDIA GeForce RTX 3060" in r.stdout
        assert "PyTorch:     cuda (CUDA build from PyPI" in r.stdout
        assert (f"NVIDIA driver {driver} is older than 580" in r.stderr) is old, r.stderr
        # --torch cpu still wins over what was found
        r = subprocess.run(["bash", str(INSTALL_SH), "--python", sys.executable, "--torch", "cpu"], env=env,
                           cwd=home, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
        assert "PyTorch:     cpu (CPU-only build" in r.stdout and "older than" not in r.stderr
    assert _tree(home) == set()


def test_install_ps1_is_present_and_parses_where_powershell_exists():
    text = INSTALL_PS1.read_text(encoding="utf-8")
    for needle in ("[switch]$Uninstall", "[switch]$Yes", "download.pytorch.org/whl/cpu", "Start Menu",
                   "platformdirs"):
        assert needle in text, needle
    pwsh = shutil.which("pwsh") or shutil.which("powershell")
    if pwsh is None:
        pytest.skip("no PowerShell here: install.ps1 is only checked for its options")
    cmd = ("$e=$null; [System.Management.Automation.Language.Parser]::ParseFile("
           f"'{INSTALL_PS1}', [ref]$null, [ref]$e) | Out-Null; if ($e.Count) {{ $e; exit 1 }}")
    r = subprocess.run([pwsh, "-NoProfile", "-Command", cmd], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("argv, expected", [
    (["--version"], "repic "),
    (["-m", "trainer", "--version"], "repic-train "),   # how the GUI starts training: [sys.executable, "-m", "trainer"]
    (["train", "--version"], "repic-train "),
    (["-m", "repic_desktop", "--version"], "repic "),
])
def test_bundle_entry_point_dispatches_like_python_would(argv, expected):
    """The frozen app's sys.executable is the bundle itself: its entry point must take what the GUI
    passes to a Python interpreter."""
    entry = ROOT / "installers" / "pyinstaller" / "repic_entry.py"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, str(entry), *argv], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.startswith(expected), r.stdout + r.stderr
