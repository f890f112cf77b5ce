"""Import Ultralytics so that it never reaches for the network and uses every CPU core.

Left alone, Ultralytics probes DNS to decide whether it is online, downloads Arial fonts the
first time it draws anything, writes settings under ~/.config, and pins torch to
cpu_count - 1 threads (one thread on a two-core machine). Offline, the first two hang or fail;
the last halves CPU speed. Every module that needs Ultralytics imports it through
`import_ultralytics()`, which must run before anything else imports `ultralytics`.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from types import ModuleType

from pipeline.model.defaults import writable_root

DEFAULT_CONFIG_DIR = writable_root() / ".yolo"  # git-ignored in a checkout; installed: ~/.cache/bbrefinement/.yolo
_FONT_NAMES = ("Arial.ttf", "Arial.Unicode.ttf")  # the names Ultralytics would download


def configure_offline_environment(config_dir: Path = DEFAULT_CONFIG_DIR, num_threads: int | None = None) -> Path:
    """Set the environment Ultralytics reads at import time; return its settings folder.

    `num_threads` (default: all cores) goes to OMP_NUM_THREADS unless already set, because
    Ultralytics otherwise sets it to 1 before torch starts.
    """
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ["YOLO_CONFIG_DIR"] = str(config_dir)
    os.environ.setdefault("OMP_NUM_THREADS", str(num_threads or os.cpu_count() or 1))
    settings_dir = Path(config_dir) / "Ultralytics"
    install_fonts(settings_dir)
    return settings_dir


def install_fonts(settings_dir: Path) -> None:
    """Copy matplotlib's DejaVuSans under the Arial names, so Ultralytics finds a font locally."""
    import matplotlib  # an Ultralytics dependency; imported here to keep this module light

    source = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    settings_dir.mkdir(parents=True, exist_ok=True)
    for name in _FONT_NAMES:
        target = settings_dir / name
        if not target.exists():
            shutil.copyfile(source, target)


def import_ultralytics(config_dir: Path = DEFAULT_CONFIG_DIR, num_threads: int | None = None) -> ModuleType:
    """Configure offline use, import `ultralytics`, and let torch use `num_threads` (default all cores).

    If `ultralytics` was already imported elsewhere its settings folder is fixed; the fonts are
    then also copied there so plotting still works offline.
    """
    configure_offline_environment(config_dir, num_threads)
    import ultralytics
    import ultralytics.utils
    import ultralytics.utils.torch_utils

    install_fonts(Path(ultralytics.utils.USER_CONFIG_DIR))
    # select_device() calls torch.set_num_threads(torch_utils.NUM_THREADS) on CPU.
    ultralytics.utils.torch_utils.NUM_THREADS = num_threads or os.cpu_count() or 1
    return ultralytics
