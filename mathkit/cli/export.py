"""``python -m mathkit export``: a model for the edge, as ONNX (fp32, optionally int8) or GGUF.

``--format onnx`` writes an ONNX graph with its KV cache (:mod:`mathkit.export.onnx_export`),
``--int8`` adds the int8 variant and its measured agreement with fp32
(:mod:`mathkit.export.quantize`); ``--format gguf`` writes a llama.cpp file in ``--quantization``
(``mathkit.export.gguf_export``). A LoRA ``--adapter`` is merged into the fp32 weights first.
``evaluate --backend onnx|llama_cpp`` and ``solve --backend ...`` run the result.
"""

from __future__ import annotations

import logging
from pathlib import Path

from mathkit.errors import ParamsError

log = logging.getLogger(__name__)

FORMATS = ("onnx", "gguf")
GGUF_QUANTIZATIONS = ("Q8_0", "Q4_K_M")
INT8_METHODS = ("weight_only", "dynamic", "dynamic_per_channel")  # mathkit.export.quantize.METHODS


def _check(args) -> None:
    if args.format not in FORMATS:
        raise ParamsError(f"--format {args.format}: use one of {', '.join(FORMATS)}")
    if args.format == "gguf" and args.int8:
        raise ParamsError("--int8 applies to --format onnx; for GGUF choose --quantization Q8_0 or Q4_K_M")
    if args.format == "onnx" and args.quantization:
        raise ParamsError("--quantization applies to --format gguf; for ONNX add --int8")
    if args.format == "onnx" and args.int8_method and not args.int8:
        raise ParamsError("--int8-method needs --int8")
    if args.quantization and args.quantization not in GGUF_QUANTIZATIONS:
        raise ParamsError(f"--quantization {args.quantization}: use one of {', '.join(GGUF_QUANTIZATIONS)}")
    if args.adapter and not (Path(args.adapter) / "adapter_config.json").is_file():
        raise ParamsError(f"--adapter {args.adapter}: no adapter_config.json there; pass the folder a LoRA "
                          "run saved its adapter to")
    if not _known_checkpoint(args.checkpoint):
        raise ParamsError(f"--checkpoint {args.checkpoint}: no such model folder or offline alias; pass a "
                          "folder saved with mathkit.models.save (or an adapter folder), or an alias such as "
                          "smollm2-135m-instruct")
    out = Path(args.output)
    if out.is_file() or (out.is_dir() and any(out.iterdir()) and not args.overwrite):
        raise ParamsError(f"--output {out} exists and is not an empty folder; choose another or add --overwrite")


def _known_checkpoint(name: str) -> bool:
    """A folder with a model or an adapter, an offline alias, or something shaped like a hub id."""
    from mathkit.models.registry import find_offline, find_stand_in

    folder = Path(name).expanduser()
    if folder.is_dir():
        return (folder / "config.json").is_file() or (folder / "adapter_config.json").is_file()
    if find_offline(name) or find_stand_in(name):
        return True
    return name.count("/") == 1 and not name.startswith((".", "/", "~")) and not folder.parent.exists()


def cmd_export(args) -> int:
    _check(args)
    if args.threads:
        from mathkit.env import set_threads

        set_threads(args.threads)
    from mathkit.models.registry import resolve_stand_in

    checkpoint = resolve_stand_in(args.checkpoint)
    if args.format == "gguf":
        from mathkit.export.gguf_export import export_gguf

        path = export_gguf(checkpoint, args.output, quantization=args.quantization or "Q8_0",
                           adapter=args.adapter)
        print(f"gguf: {path}")
        return 0
    from mathkit.export.onnx_export import export_onnx, read_manifest
    from mathkit.export.quantize import DEFAULT_METHOD, add_int8_variant

    folder = export_onnx(checkpoint, args.output, adapter=args.adapter)
    if args.int8:
        add_int8_variant(folder, method=args.int8_method or DEFAULT_METHOD, threads=args.threads or None)
    manifest = read_manifest(folder)
    for name, variant in manifest["variants"].items():
        line = f"{name}: {folder / variant['file']} ({variant['bytes'] / 2**20:.1f} MiB)"
        agree = variant.get("agreement_with_fp32")
        if agree:
            line += (f"; next-token agreement with fp32 {agree['next_token_agreement']:.1%} over "
                     f"{agree['positions']} tokens, {agree['identical_greedy_rows']}/{agree['rows']} "
                     "identical completions")
        print(line)
    print(f"manifest: {folder / 'export_manifest.json'}")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "export", help="export a model for the edge (ONNX with KV cache, int8; GGUF for llama.cpp)",
        description="Write a model as an ONNX graph with its KV cache (optionally an int8 variant, with its "
                    "agreement with fp32 measured) or as a GGUF file for llama.cpp. A LoRA adapter is merged first.")
    p.add_argument("--checkpoint", required=True, metavar="DIR|ALIAS",
                   help="a saved model folder (notebook 01's arithmetic model, a merged or adapter folder) or an "
                        "offline alias (smollm2-135m-instruct, gemma-3-270m)")
    p.add_argument("--adapter", metavar="DIR", help="LoRA adapter folder merged into --checkpoint first")
    p.add_argument("--format", required=True, metavar="onnx|gguf", help="onnx or gguf")
    p.add_argument("--int8", action="store_true", help="ONNX: also write the int8 variant and measure its agreement")
    p.add_argument("--int8-method", choices=INT8_METHODS,
                   help="ONNX int8 recipe (default weight_only: int8 weights in blocks of 32, fp32 activations)")
    p.add_argument("--quantization", metavar="Q8_0|Q4_K_M", help="GGUF weight type (default Q8_0)")
    p.add_argument("--output", required=True, metavar="DIR", help="folder to write (created; must be empty)")
    p.add_argument("--overwrite", action="store_true", help="write into a non-empty --output folder")
    p.add_argument("--threads", type=int, default=0, help="torch and ONNX Runtime threads (default: their choice)")
    p.set_defaults(func=cmd_export)
