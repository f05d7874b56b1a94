"""torch.compile traces every model, forward and training step, without a graph break (issue: compile/graphs).

The `aot_eager` backend runs Dynamo and AOTAutograd (the parts that break graphs and trace backward) without
generating code, so it is the CPU check; the custom operators' fake implementations carry the shapes.
"""

import pytest
import torch
from torch._dynamo.testing import CompileCounterWithBackend

import tritonvision

from helpers import TINY_VIT, tiny_detr_config, tiny_hybrid_config


def _vit():
    return tritonvision.ViTForImageClassification(tritonvision.ViTConfig(**TINY_VIT, num_labels=3)), 32


def _deit():
    config = tritonvision.DeiTConfig(**TINY_VIT, num_labels=3)
    return tritonvision.DeiTForImageClassification(config), 32


def _hybrid():
    return tritonvision.ViTHybridForImageClassification(tiny_hybrid_config(num_labels=3)), 64


@pytest.mark.parametrize("build", [_vit, _deit, _hybrid], ids=["vit", "deit", "hybrid"])
def test_classifier_training_step_compiles_fullgraph(build):
    model, size = build()
    model.train()
    pixel_values, labels = torch.randn(2, 3, size, size), torch.tensor([0, 2])
    explanation = torch._dynamo.explain(model)(pixel_values, labels=labels)
    assert explanation.graph_break_count == 0, explanation.break_reasons

    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    loss = compiled(pixel_values, labels=labels).loss
    loss.backward()
    compiled_grads = {name: p.grad.clone() for name, p in model.named_parameters()}
    model.zero_grad()
    eager_loss = model(pixel_values, labels=labels).loss
    eager_loss.backward()
    torch.testing.assert_close(loss, eager_loss, atol=1e-5, rtol=0)
    for name, parameter in model.named_parameters():
        torch.testing.assert_close(compiled_grads[name], parameter.grad, atol=1e-5, rtol=1e-4, msg=name)


def _detr_batch(height, width):
    pixel_mask = torch.ones(2, height, width, dtype=torch.long)
    pixel_mask[1, :, width - 16 :] = 0
    labels = {
        "class_labels": torch.tensor([[1, 2], [3, 0]]),
        "boxes": torch.tensor([[[0.5, 0.5, 0.2, 0.2], [0.3, 0.3, 0.1, 0.2]], [[0.4, 0.6, 0.3, 0.3], [0.0] * 4]]),
        "num_targets": torch.tensor([2, 1]),
    }
    return torch.randn(2, 3, height, width), pixel_mask, labels


def test_detr_training_step_compiles_once_for_several_sizes():
    model = tritonvision.DetrForObjectDetection(tiny_detr_config(auxiliary_loss=True)).train()
    counter = CompileCounterWithBackend("aot_eager")
    compiled = torch.compile(model, backend=counter, fullgraph=True, dynamic=True)
    frames_after_first_size = None
    for height, width in ((64, 80), (72, 96)):
        pixel_values, pixel_mask, labels = _detr_batch(height, width)
        out = compiled(pixel_values, pixel_mask=pixel_mask, labels=labels)
        frames_after_first_size = frames_after_first_size or counter.frame_count
        out.loss.backward()
        compiled_grad = model.class_labels_classifier.weight.grad.clone()
        model.zero_grad()
        eager = model(pixel_values, pixel_mask=pixel_mask, labels=labels)
        eager.loss.backward()
        torch.testing.assert_close(out.loss, eager.loss, atol=1e-5, rtol=0)
        torch.testing.assert_close(out.logits, eager.logits, atol=1e-5, rtol=0)
        torch.testing.assert_close(compiled_grad, model.class_labels_classifier.weight.grad, atol=1e-5, rtol=1e-4)
        model.zero_grad()
    assert counter.frame_count == frames_after_first_size, "recompiled for a new image size"


def test_compiled_graph_calls_our_attention_operator():
    """With attn_implementation="triton" the traced graph holds our operator (Triton on CUDA), not SDPA."""
    model = tritonvision.ViTModel(tritonvision.ViTConfig(**TINY_VIT)).eval()
    targets = []

    def record(graph_module, example_inputs):
        targets.extend(str(node.target) for node in graph_module.graph.nodes if node.op == "call_function")
        return graph_module.forward

    torch.compile(model, backend=record, fullgraph=True)(torch.randn(1, 3, 32, 32))
    assert sum("tritonvision.attention_fwd" in target for target in targets) == TINY_VIT["num_hidden_layers"]
    assert not any("scaled_dot_product_attention" in target for target in targets)


@pytest.mark.gpu
def test_detr_training_step_captures_in_a_cuda_graph():
    """Forward, matching of every decoder layer, loss and backward without a host synchronisation."""
    model = tritonvision.DetrForObjectDetection(tiny_detr_config(auxiliary_loss=True)).cuda().train()
    pixel_values, pixel_mask, labels = (t.cuda() if torch.is_tensor(t) else t for t in _detr_batch(64, 80))
    labels = {name: tensor.cuda() for name, tensor in labels.items()}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)

    def step():
        optimizer.zero_grad(set_to_none=False)
        loss = model(pixel_values, pixel_mask=pixel_mask, labels=labels).loss
        loss.backward()
        return loss

    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):  # warm-up: autotuning and allocator
            eager_loss = step()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    torch.cuda.set_sync_debug_mode("error")
    try:
        with torch.cuda.graph(graph):
            captured_loss = step()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    graph.replay()
    torch.cuda.synchronize()
    torch.testing.assert_close(captured_loss, eager_loss, atol=1e-4, rtol=1e-4)
