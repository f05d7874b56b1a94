"""Training-step speed, eager vs torch.compile vs CUDA graphs, ours against stock Transformers (GPU only).

Cases: ViT-B/16 at batch 64 (224x224) and DETR-R50 at batch 8 (800x1066), bf16 autocast, random weights.
Variants per implementation: eager; `torch.compile` (inductor); `torch.compile(mode="reduce-overhead")`,
which captures the step in CUDA graphs. Stock DETR's loss copies costs to the host for SciPy, so its step
cannot be captured: that cell says n/a. Ratios are stock time / our time (above 1: ours is faster).

    python benchmarks/compile.py [--iters 20] [--out FILE]
"""

import argparse
import datetime
import sys

import torch


def _vit_pair(device):
    import transformers

    import tritonvision

    config = dict(num_labels=1000)
    stock = transformers.ViTForImageClassification(transformers.ViTConfig(**config)).to(device)
    ours = tritonvision.ViTForImageClassification(tritonvision.ViTConfig(**config)).to(device)
    pixel_values = torch.randn(64, 3, 224, 224, device=device)
    labels = torch.randint(0, 1000, (64,), device=device)
    return (
        stock,
        ours,
        {"pixel_values": pixel_values, "labels": labels},
        {"pixel_values": pixel_values, "labels": labels},
    )


def _detr_pair(device):
    import transformers

    import tritonvision

    fields = dict(use_pretrained_backbone=False)
    stock = transformers.DetrForObjectDetection(transformers.DetrConfig(**fields)).to(device)
    ours = tritonvision.DetrForObjectDetection(tritonvision.DetrConfig(**fields)).to(device)
    generator = torch.Generator().manual_seed(0)
    counts = torch.randint(1, 20, (8,), generator=generator)
    max_targets = int(counts.max())
    boxes = torch.cat(
        [
            torch.rand(8, max_targets, 2, generator=generator) * 0.6 + 0.2,
            torch.rand(8, max_targets, 2, generator=generator) * 0.3 + 0.05,
        ],
        dim=-1,
    )
    classes = torch.randint(0, 91, (8, max_targets), generator=generator)
    list_labels = [
        {"class_labels": classes[i, :n].to(device), "boxes": boxes[i, :n].to(device)}
        for i, n in enumerate(counts.tolist())
    ]
    padded = {"class_labels": classes.to(device), "boxes": boxes.to(device), "num_targets": counts.to(device)}
    pixel_values = torch.randn(8, 3, 800, 1066, device=device)
    pixel_mask = torch.ones(8, 800, 1066, dtype=torch.long, device=device)
    stock_inputs = {"pixel_values": pixel_values, "pixel_mask": pixel_mask, "labels": list_labels}
    our_inputs = {"pixel_values": pixel_values, "pixel_mask": pixel_mask, "labels": padded}
    return stock, ours, stock_inputs, our_inputs


def _step_fn(model, inputs):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)

    def step():
        optimizer.zero_grad(set_to_none=False)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = model(**inputs).loss
        loss.backward()
        return loss

    return step


def _time_ms(step, iters):
    import triton.testing

    return triton.testing.do_bench(step, warmup=200, rep=max(iters * 50, 500), return_mode="median")


def _variants(model, inputs, capturable):
    yield "eager", model
    yield "compiled", torch.compile(model)
    if capturable:
        yield "cuda graphs", torch.compile(model, mode="reduce-overhead")
    else:
        yield "cuda graphs", None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--out", help="also write the table as markdown to this file")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("benchmarks/compile.py needs a CUDA GPU; none found, nothing measured.")
        return 0
    device = torch.device("cuda")
    rows = []
    for case, build in (("ViT-B/16 b64", _vit_pair), ("DETR-R50 b8 800x1066", _detr_pair)):
        stock, ours, stock_inputs, our_inputs = build(device)
        times = {}
        for name, model, inputs, capturable in (
            ("stock", stock, stock_inputs, case.startswith("ViT")),
            ("ours", ours, our_inputs, True),
        ):
            for variant, runnable in _variants(model, inputs, capturable):
                try:
                    times[name, variant] = (
                        None if runnable is None else _time_ms(_step_fn(runnable, inputs), args.iters)
                    )
                except Exception as error:  # a failing variant is reported, the others still run
                    print(f"{case} {name} {variant}: failed: {type(error).__name__}: {error}", file=sys.stderr)
                    times[name, variant] = None
        stock_eager = times["stock", "eager"]
        for variant in ("eager", "compiled", "cuda graphs"):
            mine, theirs = times["ours", variant], times["stock", variant]
            rows.append(
                (
                    case,
                    variant,
                    theirs,
                    mine,
                    theirs / mine if theirs and mine else None,
                    stock_eager / mine if stock_eager and mine else None,
                )
            )
        del stock, ours
        torch.cuda.empty_cache()

    def cell(value, fmt):
        return "n/a" if value is None else format(value, fmt)

    header = (
        "# Training step: eager / compiled / CUDA graphs\n\n"
        f"{torch.cuda.get_device_name()}, torch {torch.__version__}, CUDA {torch.version.cuda}, "
        f"{datetime.date.today()}\n"
    )
    lines = [
        header,
        "| case | variant | stock ms | ours ms | stock/ours (same variant) | stock eager/ours |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {c} | {v} | {cell(s, '.2f')} | {cell(o, '.2f')} | {cell(r, '.2f')} | {cell(e, '.2f')} |"
        for c, v, s, o, r, e in rows
    ]
    table = "\n".join(lines)
    print(table)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as handle:
            handle.write(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
