"""``export_run``: a teacher or student run -> checked, self-describing ``.onnx`` files.

Order of work: refuse bad arguments and existing files (before any conversion), load the run,
convert every model, check each against JAX, attach the metadata, write each file to a temporary
name in ``--out``, reload it with the runtime (which validates metadata and graph), and only then
rename them all into place. A failure at any point leaves ``--out`` as it was.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any, Callable

import onnx

from deepdistill import __version__
from deepdistill.export import graph, metadata
from deepdistill.export.config import MODEL_FILES, ExportConfig
from deepdistill.export.contract import TASK_XML, controller_metadata
from deepdistill.export.convert import ModelDef, model_defs, to_onnx_model
from deepdistill.export.parity import check_parity, parity_inputs
from deepdistill.core.checkpoint import Checkpointer
from deepdistill.core.errors import ConfigError, UserError
from deepdistill.envs.observation import ObservationModel
from deepdistill.student.interface import is_recurrent
from deepdistill.student.policy import PolicyRun, load_policy_run
from deepdistill.core.rundir import check_run, check_writable_dir, exclusive, write_temp

MAX_FILE_BYTES = 2**31 - 1  # protobuf's limit for one file


def _print(message: str) -> None:
    print(message, flush=True)


def export_run(cfg: ExportConfig) -> dict[str, Any]:
    """Export the run of ``cfg`` (see :class:`ExportConfig`); returns a summary per written file."""
    cfg.validate()
    check_run(cfg.run_dir, cfg.kind, cfg.flag)  # a missing or wrong run is reported before anything else
    out = cfg.out_dir
    files = MODEL_FILES if cfg.encoders else MODEL_FILES[:1]
    check_writable_dir(out, "--out")
    with exclusive(out, "--out"):  # one writer per folder for the whole export
        return _export_locked(cfg, out, files)


def _export_locked(cfg: ExportConfig, out: Path, files: tuple[str, ...]) -> dict[str, Any]:
    existing = [f for f in (*files, TASK_XML) if (out / f).exists()]
    if existing and not cfg.overwrite:
        raise ConfigError(f"--out {out} already holds {', '.join(existing)}; pass --overwrite to replace, or choose another --out")
    if cfg.step is not None:
        ckpt = Checkpointer(cfg.run_dir, read_only=True)
        try:
            steps = ckpt.steps()
        finally:
            ckpt.close()
        if cfg.step not in steps:
            raise ConfigError(f"--step {cfg.step}: {cfg.flag} {cfg.run_dir} has checkpoints at steps {steps or 'none'}")
    t0 = time.perf_counter()
    run = load_policy_run(cfg.run_dir, cfg.kind, cfg.flag, cfg.step)
    _print(f"loaded the {run.kind} run {cfg.run_dir} (step {run.step}) in {time.perf_counter() - t0:.1f} s")
    return export_policy(run, out, cfg)


def export_policy(run: PolicyRun, out: Path, cfg: ExportConfig, log: Callable[[str], None] = _print) -> dict[str, Any]:
    """Convert, check and write the models of a loaded run (``cfg`` supplies the options)."""
    observation = run.observation if run.sensed else None
    defs = model_defs(run.nets, run.params, run.spec, cfg.max_unrolled_depth, cfg.encoders, observation)
    inputs = parity_inputs(run.spec, cfg.parity_samples, cfg.parity_env_steps, cfg.seed, observation,
                           int(getattr(run.nets, "carry_size", 0) or 0) if is_recurrent(run.nets) else 0)
    base, task_xml = run_metadata(run)
    models, summary = [], {}
    for d in defs:
        t0 = time.perf_counter()
        model = to_onnx_model(d, cfg.opset)
        convert_s = time.perf_counter() - t0
        figures = check_parity(d, model, inputs, cfg.tolerance)
        parity_s = time.perf_counter() - t0 - convert_s
        attach_metadata(model, {**base, **model_metadata(d, run), "parity": figures})
        size = model.ByteSize()
        if size > MAX_FILE_BYTES:
            raise UserError(f"{d.name}.onnx would be {size / 2**30:.1f} GiB, past the 2 GiB limit of one ONNX file")
        models.append((d, model))
        counts = graph.op_counts(model)
        log(
            f"{d.name}: {sum(counts.values())} nodes ({'blocks in one Loop' if d.looped else 'unrolled'}), "
            f"{size / 1e6:.2f} MB, converted in {convert_s:.1f} s, parity {figures['max_err']:.2g} <= {cfg.tolerance:g} "
            f"(checked in {parity_s:.1f} s)"
        )
        summary[d.name] = {
            "file": str(out / f"{d.name}.onnx"),
            "bytes": size,
            "nodes": sum(counts.values()),
            "ops": dict(sorted(counts.items())),
            "blocks_as": "loop" if d.looped else "unrolled",
            "convert_s": round(convert_s, 3),
            "parity_s": round(parity_s, 3),
            "parity_max_err": figures["max_err"],
        }
    t0 = time.perf_counter()
    extra = {TASK_XML: task_xml} if task_xml is not None else {}
    write_models(out, models, extra)
    log(f"wrote {len(models) + len(extra)} file(s) to {out} in {time.perf_counter() - t0:.1f} s"
        + ("" if extra else f" (no task.xml: {base['controller']['reason']})"))
    if extra:
        summary[TASK_XML] = {"file": str(out / TASK_XML), "bytes": len(task_xml), "sha256": base["controller"]["task_xml_sha256"]}
    return summary


def run_metadata(run: PolicyRun) -> tuple[dict[str, Any], bytes | None]:
    """The fields every model of ``run`` shares (see :mod:`deepdistill.export.metadata`), and the task's
    MJCF for ``task.xml`` (None when the task has no native MuJoCo recipe)."""
    from deepdistill.envs import make_env

    spec = run.spec
    teacher = run.info.get("teacher") if run.kind == "student" else None
    env = make_env(spec.name)
    controller, names, task_xml = controller_metadata(env)
    observation = run.observation or ObservationModel.full(env.observation_terms(), spec.action_size)
    recurrent = None
    if is_recurrent(run.nets):
        recurrent = {"hidden_size": int(run.nets.carry_size), "input": "h_in", "output": "h_out",
                     "initial": "zeros at the first control step of every episode; then the h_out of the previous step"}
    return {
        "schema_version": metadata.SCHEMA_VERSION,
        "task": spec.name,
        "env_spec": spec.to_dict(),
        "observation_size": spec.state_size,
        "goal_size": spec.goal_size,
        "action_size": spec.action_size,
        "goal_indices": list(spec.goal_indices),
        "action_low": float(spec.action_low),
        "action_high": float(spec.action_high),
        "success_threshold": float(spec.success_threshold),
        "input_normalization": "none: feed raw values (the robot state or sensor frames, the goal), as the task produces them",
        "provenance": {
            "run_kind": run.kind,
            "run": str(run.run_dir.resolve()),
            "step": int(run.step),
            **({"skipped_steps": list(run.skipped)} if run.skipped else {}),
            "teacher": teacher,
            "exported_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        },
        "deepdistill_version": __version__,
        **names,
        "controller": controller,
        "observation_model": observation.to_dict(),
        "recurrent": recurrent,
    }, task_xml


def model_metadata(d: ModelDef, run: PolicyRun) -> dict[str, Any]:
    summary = run.nets.describe()
    prefix = "actor" if d.network == "actor" else "critic"
    return {
        "model": d.name,
        "inputs": [p.to_dict() for p in d.inputs],
        "outputs": [p.to_dict() for p in d.outputs],
        "architecture": {
            "network": d.network,
            "arch": summary["arch"],
            "depth": summary.get(f"{prefix}_depth"),
            "width": summary.get(f"{prefix}_width"),
            "num_params": run.nets.num_params()[d.network],
            "blocks_as": "loop" if d.looped else "unrolled",
            "networks": run.nets.to_dict(),
        },
    }


def attach_metadata(model: onnx.ModelProto, meta: dict[str, Any]) -> None:
    """Replace ``model``'s ``deepdistill.*`` metadata with ``meta`` plus the digests of its graph
    (``weights_sha256``, :func:`metadata.graph_digest`) and of its metadata and graph together
    (``content_sha256``, :func:`metadata.content_digest`); set producer and doc string."""
    graph = model.graph.SerializeToString()
    meta = {k: v for k, v in meta.items() if k != metadata.CONTENT_DIGEST}
    meta["weights_sha256"] = hashlib.sha256(graph).hexdigest()
    props = metadata.encode(meta)
    props[metadata.PREFIX + metadata.CONTENT_DIGEST] = json.dumps(metadata.content_digest(props, graph))
    keep = [p for p in model.metadata_props if not p.key.startswith(metadata.PREFIX)]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    onnx.helper.set_model_props(model, props)
    model.producer_name = "deepdistill"
    model.producer_version = __version__
    model.doc_string = (
        f"deepdistill {meta['model']} of a {meta['provenance']['run_kind']} run on {meta['task']} "
        f"(step {meta['provenance']['step']}); see metadata_props deepdistill.*"
    )


def write_models(out: Path, models: list[tuple[ModelDef, onnx.ModelProto]], extra: dict[str, bytes] | None = None) -> None:
    """Write every model (and the ``extra`` files, ``{name: bytes}``) to temporary files, reload each model
    with the runtime, then rename all into place."""
    from deepdistill.export.runtime import OnnxModel

    out.mkdir(parents=True, exist_ok=True)
    temps: list[tuple[str, Path]] = []
    try:
        for d, model in models:
            tmp = write_temp(out / f"{d.name}.onnx", model.SerializeToString())
            temps.append((d.name, tmp))
            OnnxModel(tmp, model=d.name)  # metadata and graph readable by the controller-side loader
        for fname, data in (extra or {}).items():
            temps.append((fname, write_temp(out / fname, data)))
        for name, tmp in temps:
            os.replace(tmp, out / (name if name in (extra or {}) else f"{name}.onnx"))
    finally:
        for _, tmp in temps:
            tmp.unlink(missing_ok=True)
