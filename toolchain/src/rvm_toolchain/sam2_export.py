"""SAM2 checkpoint (or seeded random weights) -> image encoder ONNX + box-prompted mask decoder ONNX.

SAM2 is split in two because the device encodes a frame once (seconds on a CPU) and then decodes one
mask per accepted item (tens of milliseconds). The split follows ``SAM2ImagePredictor`` exactly, so
an operator's Meta checkpoint exported here gives the same masks as Meta's predictor.

Encoder ``sam2_encoder.onnx``
    input  ``image``             float32 [1, 3, 1024, 1024]: RGB, resized to 1024x1024 (aspect ratio
                                  *not* kept, bilinear), scaled to [0, 1], then normalised with
                                  mean (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225) per channel
    output ``image_embed``       float32 [1, 256, 64, 64]  (no-memory embedding already added)
    output ``high_res_feats_0``  float32 [1, 32, 256, 256]
    output ``high_res_feats_1``  float32 [1, 64, 128, 128]

Decoder ``sam2_decoder.onnx`` (N prompts of K points each; both axes dynamic)
    inputs ``image_embed``, ``high_res_feats_0``, ``high_res_feats_1`` as the encoder gave them
    input  ``point_coords``      float32 [N, K, 2]: (x, y) in the 1024x1024 encoder frame, i.e. original
                                  pixel x * 1024 / width, y * 1024 / height
    input  ``point_labels``      float32 [N, K]: 1 foreground point, 0 background point,
                                  2 box top-left corner, 3 box bottom-right corner
    output ``masks``             float32 [N, 1, 256, 256]: low-resolution mask logits; resize to the
                                  original frame (bilinear) and threshold at 0
    output ``iou_predictions``   float32 [N, 1]: the model's estimate of the mask's IoU

A box prompt is two points: ``[[x1, y1], [x2, y2]]`` with labels ``[2, 3]``.

With ``checkpoint=None`` the weights are random (seeded, reproducible): the graphs, shapes and
timings are those of the real model, the masks are meaningless. Operators export Meta's checkpoints.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rvm_edge.manifest import Manifest, ManifestError, ModelEntry, load_manifest, sha256_file, verify_entry
from rvm_toolchain.manifests import merge_into

#: sam2's bundled model configs, by the names operators know from Meta's checkpoint files.
SAM2_CONFIGS = {
    "tiny": "configs/sam2.1/sam2.1_hiera_t.yaml",
    "small": "configs/sam2.1/sam2.1_hiera_s.yaml",
    "base_plus": "configs/sam2.1/sam2.1_hiera_b+.yaml",
    "large": "configs/sam2.1/sam2.1_hiera_l.yaml",
}
IMAGE_SIZE = 1024
PIXEL_MEAN = (0.485, 0.456, 0.406)
PIXEL_STD = (0.229, 0.224, 0.225)
ENCODER_OUTPUTS = ("image_embed", "high_res_feats_0", "high_res_feats_1")
DECODER_INPUTS = (*ENCODER_OUTPUTS, "point_coords", "point_labels")
DECODER_OUTPUTS = ("masks", "iou_predictions")
DEFAULT_OPSET = 17
ENCODER_FILE = "sam2_encoder.onnx"
DECODER_FILE = "sam2_decoder.onnx"

INTERFACE_DOC = {
    "encoder_input": {
        "image": [1, 3, IMAGE_SIZE, IMAGE_SIZE],
        "preprocess": "RGB, resize to 1024x1024 (bilinear, aspect ratio not kept), /255, "
        "(x - mean) / std per channel",
        "mean": list(PIXEL_MEAN),
        "std": list(PIXEL_STD),
    },
    "encoder_outputs": {
        "image_embed": [1, 256, 64, 64],
        "high_res_feats_0": [1, 32, 256, 256],
        "high_res_feats_1": [1, 64, 128, 128],
    },
    "decoder_inputs": {
        "image_embed": [1, 256, 64, 64],
        "high_res_feats_0": [1, 32, 256, 256],
        "high_res_feats_1": [1, 64, 128, 128],
        "point_coords": ["N", "K", 2],
        "point_labels": ["N", "K"],
    },
    "decoder_outputs": {"masks": ["N", 1, 256, 256], "iou_predictions": ["N", 1]},
    "prompt": "box = point_coords [[x1,y1],[x2,y2]] in the 1024 frame (x*1024/W, y*1024/H), "
    "point_labels [2,3]; 1/0 = foreground/background point",
    "postprocess": "bilinear resize of masks to the original frame, logits > 0 is the mask",
}


class Sam2ExportError(RuntimeError):
    """Export failed for a reason the operator can fix (unknown variant, unreadable checkpoint)."""


@dataclass(frozen=True)
class Sam2Recipe:
    """Everything that decides the bytes of the exported pair; equal recipes give equal files."""

    variant: str = "tiny"
    seed: int = 0
    checkpoint_sha256: str | None = None
    opset: int = DEFAULT_OPSET

    def to_json(self) -> dict[str, Any]:
        return {
            "variant": self.variant,
            "config": SAM2_CONFIGS[self.variant],
            "seed": self.seed,
            "checkpoint_sha256": self.checkpoint_sha256,
            "opset": self.opset,
        }


def _torch_modules() -> tuple[Any, Any]:
    try:
        import torch
        from torch import nn
    except ImportError as exc:  # pragma: no cover - depends on the venv
        raise Sam2ExportError(
            f"SAM2 export needs torch and sam2 ({exc}); create the export venv with `make -C toolchain venv`"
        ) from None
    return torch, nn


def build_model(variant: str, checkpoint: Path | None, seed: int) -> Any:
    """A SAM2 model on the CPU in eval mode; random weights seeded by ``seed`` when no checkpoint."""
    if variant not in SAM2_CONFIGS:
        raise Sam2ExportError(f"unknown SAM2 variant {variant!r}; expected one of {', '.join(SAM2_CONFIGS)}")
    if checkpoint is not None and not checkpoint.is_file():
        raise Sam2ExportError(f"{checkpoint}: SAM2 checkpoint not found (expected Meta's sam2.1_hiera_*.pt)")
    torch, _ = _torch_modules()
    from sam2.build_sam import build_sam2

    torch.manual_seed(seed)
    try:
        return build_sam2(
            SAM2_CONFIGS[variant], ckpt_path=str(checkpoint) if checkpoint else None, device="cpu"
        )
    except RuntimeError as exc:
        raise Sam2ExportError(
            f"{checkpoint}: does not load into SAM2 {variant} ({str(exc)[:300]}); pass the variant "
            "matching the checkpoint (sam2.1_hiera_tiny.pt -> tiny, _small -> small, "
            "_base_plus -> base_plus, _large -> large)"
        ) from None


def make_wrappers(model: Any) -> tuple[Any, Any]:
    """The encoder and decoder halves as ``nn.Module`` s with plain tensor inputs and outputs."""
    _, nn = _torch_modules()

    class Encoder(nn.Module):
        """``SAM2ImagePredictor.set_image`` after the transforms."""

        def __init__(self, sam: Any) -> None:
            super().__init__()
            self.sam = sam
            size = sam.image_size
            self.feat_sizes = [(size // 4, size // 4), (size // 8, size // 8), (size // 16, size // 16)]

        def forward(self, image: Any) -> tuple[Any, Any, Any]:
            backbone_out = self.sam.forward_image(image)
            _, vision_feats, _, _ = self.sam._prepare_backbone_features(backbone_out)
            if self.sam.directly_add_no_mem_embed:
                vision_feats[-1] = vision_feats[-1] + self.sam.no_mem_embed
            feats = [
                feat.permute(1, 2, 0).reshape(1, -1, h, w)
                for feat, (h, w) in zip(vision_feats, self.feat_sizes, strict=True)
            ]
            return feats[2], feats[0], feats[1]

    class Decoder(nn.Module):
        """``SAM2ImagePredictor._predict`` with points (a box is two points labelled 2 and 3)."""

        def __init__(self, sam: Any) -> None:
            super().__init__()
            self.prompt_encoder = sam.sam_prompt_encoder
            self.mask_decoder = sam.sam_mask_decoder

        def forward(
            self, image_embed: Any, feats0: Any, feats1: Any, coords: Any, labels: Any
        ) -> tuple[Any, Any]:
            sparse, dense = self.prompt_encoder(points=(coords, labels), boxes=None, masks=None)
            n = coords.shape[0]
            masks, iou, _, _ = self.mask_decoder(
                image_embeddings=image_embed.expand(n, -1, -1, -1),
                image_pe=self.prompt_encoder.get_dense_pe(),
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense,
                multimask_output=False,
                repeat_image=False,
                high_res_features=[feats0, feats1],
            )
            return masks, iou

    return Encoder(model).eval(), Decoder(model).eval()


def _export(
    module: Any,
    args: tuple[Any, ...],
    path: Path,
    inputs: tuple[str, ...],
    outputs: tuple[str, ...],
    dynamic: dict[str, dict[int, str]] | None,
    opset: int,
) -> None:
    torch, _ = _torch_modules()
    tmp = path.with_name(path.name + ".tmp")
    with torch.no_grad():
        # The TorchScript exporter: SAM2's graphs export cleanly with it and its output runs on both
        # onnxruntime and OpenVINO; the dynamo exporter's opset-18+ output is less portable today.
        torch.onnx.export(
            module,
            args,
            str(tmp),
            dynamo=False,
            opset_version=opset,
            input_names=list(inputs),
            output_names=list(outputs),
            dynamic_axes=dynamic,
            do_constant_folding=True,
        )
    tmp.replace(path)


def _ort_latency_ms(path: Path, feeds: dict[str, Any], runs: int) -> float:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    sess.run(None, feeds)  # warm-up: first run allocates arenas
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        sess.run(None, feeds)
        times.append((time.perf_counter() - t0) * 1000)
    return round(statistics.median(times), 1)


def is_current(out_dir: Path, recipe: Sam2Recipe) -> bool:
    """True when ``out_dir`` already holds a verified pair built from ``recipe`` (nothing to redo)."""
    try:
        manifest = load_manifest(out_dir / "manifest.json")
    except ManifestError:
        return False
    pair = [m for m in manifest.models if m.role in ("sam2_encoder", "sam2_decoder")]
    if len(pair) != 2 or any(m.source.get("recipe") != recipe.to_json() for m in pair):
        return False
    return not any(verify_entry(manifest, m, check_graph=False) for m in pair)


def export_sam2(
    out_dir: Path,
    recipe: Sam2Recipe,
    checkpoint: Path | None = None,
    version: str = "lab-random",
    measure: bool = True,
) -> Manifest:
    """Export the pair into ``out_dir`` and add it to ``out_dir/manifest.json``; returns the manifest."""
    torch, _ = _torch_modules()
    import numpy as np

    out_dir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    t0 = time.perf_counter()
    model = build_model(recipe.variant, checkpoint, recipe.seed)
    encoder, decoder = make_wrappers(model)
    image = torch.randn(1, 3, IMAGE_SIZE, IMAGE_SIZE, generator=torch.Generator().manual_seed(recipe.seed))
    with torch.no_grad():
        embed, f0, f1 = encoder(image)
    enc_path, dec_path = out_dir / ENCODER_FILE, out_dir / DECODER_FILE
    _export(encoder, (image,), enc_path, ("image",), ENCODER_OUTPUTS, None, recipe.opset)
    t_enc = time.perf_counter() - t0
    coords = torch.tensor([[[100.0, 150.0], [600.0, 800.0]]])
    labels = torch.tensor([[2.0, 3.0]])
    dynamic = {
        "point_coords": {0: "num_prompts", 1: "num_points"},
        "point_labels": {0: "num_prompts", 1: "num_points"},
        "masks": {0: "num_prompts"},
        "iou_predictions": {0: "num_prompts"},
    }
    _export(
        decoder,
        (embed, f0, f1, coords, labels),
        dec_path,
        DECODER_INPUTS,
        DECODER_OUTPUTS,
        dynamic,
        recipe.opset,
    )
    t_all = time.perf_counter() - t0

    timing: dict[str, Any] = {
        "export_seconds": round(t_all, 1),
        "encoder_export_seconds": round(t_enc, 1),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
    }
    enc_latency = dec_latency = None
    if measure:
        enc_latency = _ort_latency_ms(enc_path, {"image": image.numpy()}, runs=3)
        dec_feeds = {
            "image_embed": embed.numpy(),
            "high_res_feats_0": f0.numpy(),
            "high_res_feats_1": f1.numpy(),
            "point_coords": coords.numpy().astype(np.float32),
            "point_labels": labels.numpy(),
        }
        dec_latency = _ort_latency_ms(dec_path, dec_feeds, runs=10)
    common = {
        "recipe": recipe.to_json(),
        "weights": "checkpoint"
        if checkpoint
        else "random (seeded): masks are meaningless; export Meta's checkpoint for real masks",
        "interface": INTERFACE_DOC,
        "made_by": "rvm-toolchain export --sam2 (rvm_toolchain.sam2_export)",
        "torch": torch.__version__,
        **timing,
    }
    entries = (
        ModelEntry(
            name=f"sam2.1-{recipe.variant}-encoder",
            role="sam2_encoder",
            version=version,
            file=ENCODER_FILE,
            sha256=sha256_file(enc_path),
            format="onnx",
            precision="fp32",
            input_shape=(1, 3, IMAGE_SIZE, IMAGE_SIZE),
            source={
                **common,
                "size_mb": round(enc_path.stat().st_size / 1e6, 1),
                "ort_cpu_ms_p50": enc_latency,
            },
        ),
        ModelEntry(
            name=f"sam2.1-{recipe.variant}-decoder",
            role="sam2_decoder",
            version=version,
            file=DECODER_FILE,
            sha256=sha256_file(dec_path),
            format="onnx",
            precision="fp32",
            input_shape=tuple(int(d) for d in embed.shape),
            source={
                **common,
                "size_mb": round(dec_path.stat().st_size / 1e6, 1),
                "ort_cpu_ms_p50": dec_latency,
            },
        ),
    )
    return merge_into(out_dir / "manifest.json", entries)


def main(argv: list[str] | None = None) -> int:
    """``python -m rvm_toolchain.sam2_export``: what ``make sam2-lab`` runs."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the ONNX pair and manifest.json")
    parser.add_argument("--variant", default="tiny", choices=sorted(SAM2_CONFIGS))
    parser.add_argument(
        "--checkpoint", type=Path, help="Meta's .pt checkpoint; random seeded weights without it"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET)
    parser.add_argument(
        "--version", default=None, help="manifest version (default: lab-random or the file stem)"
    )
    parser.add_argument("--force", action="store_true", help="export even when the folder is up to date")
    args = parser.parse_args(argv)
    ckpt_sha = sha256_file(args.checkpoint) if args.checkpoint and args.checkpoint.is_file() else None
    recipe = Sam2Recipe(variant=args.variant, seed=args.seed, checkpoint_sha256=ckpt_sha, opset=args.opset)
    if not args.force and is_current(args.out, recipe):
        print(f"{args.out}: SAM2 {args.variant} pair is up to date (recipe {json.dumps(recipe.to_json())})")
        return 0
    version = args.version or (args.checkpoint.stem if args.checkpoint else "lab-random")
    try:
        manifest = export_sam2(args.out, recipe, args.checkpoint, version=version)
    except Sam2ExportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for m in manifest.models:
        src = m.source
        print(f"{manifest.file_path(m)}: {src['size_mb']} MB, ORT CPU {src['ort_cpu_ms_p50']} ms")
    print(f"export took {manifest.models[0].source['export_seconds']} s; manifest {manifest.path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
