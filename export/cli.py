"""``export-onnx``: export a student (or teacher) run to ONNX (flags: ``export-onnx --help``)."""

from __future__ import annotations

import json

from deepdistill.core.cli import run_cli
from deepdistill.export.config import ExportConfig


def _main(cfg: ExportConfig) -> None:
    cfg.validate()  # before importing JAX: bad flags answer at once
    from deepdistill.export.writer import export_run

    summary = export_run(cfg)
    print(f"exported to {cfg.out_dir}: {', '.join(m['file'].rsplit('/', 1)[-1] for m in summary.values())}")
    print(json.dumps(summary))


def main(args: list[str] | None = None) -> None:
    run_cli("export-onnx", ExportConfig, _main, args)


if __name__ == "__main__":
    main()
