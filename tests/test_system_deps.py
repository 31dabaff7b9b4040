"""scripts/system-deps.sh, which `make test` runs first: on a fresh machine it installs the system packages
when it is root (through apt-get), and otherwise stops at once with the one command to run.

Run with a PATH holding only stand-ins for `id` and `apt-get` (the real ones would need a fresh machine),
so the packages are missing; the stand-in apt-get records its arguments and "installs" a command per package.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "system-deps.sh"


def fake_bin(tmp_path: Path, uid: int, apt: bool = True) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "id").write_text(f"#!/bin/sh\necho {uid}\n")
    if apt:
        (bin_dir / "apt-get").write_text(
            "#!/bin/sh\n"
            f'echo "$@" >> {tmp_path}/apt.log\n'
            'if [ "$1" = install ]; then for p in "$@"; do\n'
            f'  case "$p" in -*|install) ;; *) printf "#!/bin/sh\\n" > {bin_dir}/"$p";\n'
            f'  /bin/chmod +x {bin_dir}/"$p";; esac\n'
            "done; fi\n"
        )
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    return bin_dir


def run(bin_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": str(bin_dir), "HOME": str(bin_dir)}
    return subprocess.run(["/bin/bash", str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=30)


def test_not_root_stops_at_once_with_the_one_command(tmp_path: Path):
    proc = run(fake_bin(tmp_path, uid=1000), "ensure")
    assert proc.returncode == 1
    assert "missing system packages: ffmpeg espeak-ng sox gcc python3-venv fontconfig fonts-dejavu-core" in proc.stderr
    assert proc.stderr.rstrip().endswith("run: sudo make system-deps")
    assert not (tmp_path / "apt.log").exists()


def test_root_installs_what_is_missing_then_passes(tmp_path: Path):
    bin_dir = fake_bin(tmp_path, uid=0)
    (bin_dir / "python3").write_text("#!/bin/sh\nexit 0\n")  # a python with ensurepip
    (bin_dir / "python3").chmod(0o755)
    for present in ("sox", "gcc"):
        (bin_dir / present).write_text("#!/bin/sh\n")
        (bin_dir / present).chmod(0o755)
    (bin_dir / "fc-match").write_text("#!/bin/sh\necho /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf\n")
    (bin_dir / "fc-match").chmod(0o755)  # the font is installed
    proc = run(bin_dir, "ensure")
    assert proc.returncode == 0, proc.stderr
    assert "installing missing system packages: ffmpeg espeak-ng" in proc.stderr
    log = (tmp_path / "apt.log").read_text().splitlines()
    assert log[0] == "update -qq"
    assert log[1] == "install -y -qq --no-install-recommends ffmpeg espeak-ng"  # only what was missing
    assert run(bin_dir, "ensure").returncode == 0 and len((tmp_path / "apt.log").read_text().splitlines()) == 2


def test_root_without_apt_names_the_packages(tmp_path: Path):
    proc = run(fake_bin(tmp_path, uid=0, apt=False), "ensure")
    assert proc.returncode == 1 and "missing system packages: ffmpeg espeak-ng sox gcc" in proc.stderr
    assert "package manager" in proc.stderr


def test_this_machine_has_them(tmp_path: Path):
    # The suite is running, so the real check must find everything (and so install nothing).
    proc = subprocess.run([str(SCRIPT), "ensure"], capture_output=True, text=True, timeout=30, env=dict(os.environ))
    assert proc.returncode == 0 and proc.stderr == ""
