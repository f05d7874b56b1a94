"""DETR-R50 speed: our DetrForObjectDetection against stock Transformers', random weights, bf16 autocast.

Measures inference (forward) and a training step (forward, Hungarian loss, backward) at batch 8, 800x1066,
and prints the times and ours/stock ratios. Needs a CUDA GPU; elsewhere it says so and exits 0.

    python benchmarks/detr.py [--batch 8] [--height 800] [--width 1066] [--iters 10]
"""

import argparse
import datetime
import sys
import time

import torch


def _labels(batch_size: int, device, generator) -> list[dict]:
    labels = []
    for _ in range(batch_size):
        count = int(torch.randint(1, 20, (1,), generator=generator))
        centers = torch.rand(count, 2, generator=generator) * 0.6 + 0.2
        sizes = torch.rand(count, 2, generator=generator) * 0.3 + 0.05
        labels.append(
            {
                "class_labels": torch.randint(0, 91, (count,), generator=generator).to(device),
                "boxes": torch.cat([centers, sizes], dim=1).to(device),
            }
        )
    return labels


def _time(step, iters: int) -> float:
    for _ in range(3):
        step()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(iters):
        step()
    torch.cuda.synchronize()
    return (time.perf_counter() - start) / iters * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--height", type=int, default=800)
    parser.add_argument("--width", type=int, default=1066)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--out", help="also write the table as markdown to this file")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("benchmarks/detr.py needs a CUDA GPU; none found, nothing measured.")
        return 0

    import transformers

    import tritonvision  # noqa: F401  (registers attn_implementation="triton")
    from tritonvision.modeling.detr_loss import labels_to_padded
    from tritonvision.modeling.modeling_detr import DetrForObjectDetection

    device = torch.device("cuda")
    torch.manual_seed(0)
    config = transformers.DetrConfig(use_pretrained_backbone=False, backbone="resnet50", num_labels=91)
    stock = transformers.DetrForObjectDetection(config).to(device)
    folder = "/tmp/tritonvision_detr_bench"
    stock.save_pretrained(folder)
    ours = DetrForObjectDetection.from_pretrained(folder, attn_implementation="triton").to(device)
    generator = torch.Generator().manual_seed(0)
    pixel_values = torch.randn(args.batch, 3, args.height, args.width, device=device)
    pixel_mask = torch.ones(args.batch, args.height, args.width, dtype=torch.long, device=device)
    pixel_mask[1::2, :, args.width * 3 // 4 :] = 0  # half the batch padded on the right
    labels = _labels(args.batch, device, generator)
    padded = dict(zip(("class_labels", "boxes", "num_targets"), labels_to_padded(labels, device)))

    results = {}
    for name, model, model_labels in (("stock", stock, labels), ("ours", ours, padded)):

        def infer(model=model):
            with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
                model(pixel_values, pixel_mask=pixel_mask)

        def train(model=model, model_labels=model_labels):
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss = model(pixel_values, pixel_mask=pixel_mask, labels=model_labels).loss
            loss.backward()
            model.zero_grad(set_to_none=True)

        model.eval()
        results[name, "inference"] = _time(infer, args.iters)
        model.train()
        results[name, "train step"] = _time(train, args.iters)

    lines = [
        f"DETR-R50, batch {args.batch}, {args.height}x{args.width}, bf16 autocast, {torch.cuda.get_device_name()}, "
        f"torch {torch.__version__}, transformers {transformers.__version__}, {datetime.date.today()}",
        "",
        "| task | stock ms | ours ms | stock/ours |",
        "|---|---|---|---|",
    ]
    for task in ("inference", "train step"):
        stock_ms, ours_ms = results["stock", task], results["ours", task]
        lines.append(f"| {task} | {stock_ms:.2f} | {ours_ms:.2f} | {stock_ms / ours_ms:.2f} |")
    print("\n".join(lines))
    if args.out:
        with open(args.out, "w", encoding="utf-8") as handle:
            handle.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
