"""A busybox image without a registry: Debian's busybox-static and its applet links, imported."""

from __future__ import annotations

import io
import struct
import subprocess
import tarfile
from pathlib import Path

from tests.docker.daemon import DockerDaemon

#: Debian's busybox-static installs a statically linked busybox here.
BUSYBOX = Path("/bin/busybox")
#: The name the image gets in every test daemon.
IMAGE = "ipamkit-test-busybox"
# Mount points Docker expects to find in a root.
PT_INTERP = 3
_DIRS = ("bin", "dev", "etc", "proc", "sys", "tmp")


def busybox_is_static() -> bool:
    """Whether ``BUSYBOX`` is a 64-bit ELF without a loader (the image holds nothing else)."""
    try:
        elf = BUSYBOX.read_bytes()
    except FileNotFoundError:
        return False
    if elf[:5] != b"\x7fELF\x02":
        return False
    # A dynamically linked binary names its loader in a PT_INTERP program header.
    phoff, phentsize, phnum = struct.unpack_from("<Q14xHH", elf, 0x20)
    types = (struct.unpack_from("<I", elf, phoff + i * phentsize)[0] for i in range(phnum))
    return PT_INTERP not in types


def write_rootfs(path: Path) -> Path:
    """Write a root with ``bin/busybox`` and a link per applet as a tar at ``path``."""
    applets = subprocess.run(
        [str(BUSYBOX), "--list"], capture_output=True, text=True, timeout=30, check=True
    ).stdout.split()
    with tarfile.open(path, "w") as tar:
        for name in _DIRS:
            entry = tarfile.TarInfo(name)
            entry.type, entry.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(entry)
        tar.add(BUSYBOX, "bin/busybox")
        for applet in applets:
            if applet != "busybox":
                link = tarfile.TarInfo(f"bin/{applet}")
                link.type, link.linkname = tarfile.SYMTYPE, "busybox"
                tar.addfile(link, io.BytesIO())
    return path


def import_image(daemon: DockerDaemon, rootfs: Path) -> None:
    """``docker import`` the root as ``IMAGE``."""
    daemon.docker("import", str(rootfs), IMAGE)
