"""The one attention function that every model in this package calls.

Models hand over per-head queries, keys and values plus an optional key padding mask, and name an
implementation: `"eager"` (explicit softmax, the only one that returns attention weights), `"sdpa"`
(PyTorch's `scaled_dot_product_attention`) or `"triton"` (our fused kernel, `fused_attention`, which runs
on CUDA tensors and falls back to the PyTorch reference elsewhere). Whatever the implementation, a query
whose keys are all padded gets a zero output, never NaN.

The same door is registered in Transformers' `AttentionInterface` under the name `"triton"`, so that
stock Transformers models accept `attn_implementation="triton"` too.
"""

import torch
from torch.nn import functional as F

from .triton_attention import fused_attention

IMPLEMENTATIONS = ("eager", "sdpa", "triton")


def attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    key_padding_mask: torch.Tensor | None = None,
    *,
    scale: float | None = None,
    dropout_p: float = 0.0,
    implementation: str = "sdpa",
    output_attentions: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Multi-head attention over already-projected heads.

    Args:
        query: `(B, H, Nq, D)`.
        key, value: `(B, H, Nk, D)`.
        key_padding_mask: bool `(B, Nk)`, True where a key is padding and must be ignored.
        scale: softmax temperature, `D ** -0.5` by default.
        dropout_p: dropout on the attention probabilities (pass 0.0 outside training).
        implementation: one of `IMPLEMENTATIONS`.
        output_attentions: also return the `(B, H, Nq, Nk)` probabilities (computed eagerly).

    Returns:
        `(output (B, H, Nq, D), probabilities or None)`.
    """
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(f"attention implementation must be one of {IMPLEMENTATIONS}, got {implementation!r}")
    if key_padding_mask is not None:
        if key_padding_mask.dtype != torch.bool:
            raise ValueError(f"key_padding_mask must be a bool tensor, got {key_padding_mask.dtype}")
        if key_padding_mask.shape != (key.shape[0], key.shape[2]):
            raise ValueError(
                f"key_padding_mask must have shape (batch, keys) = {(key.shape[0], key.shape[2])}, "
                f"got {tuple(key_padding_mask.shape)}"
            )
    if scale is None:
        scale = query.shape[-1] ** -0.5

    # The kernel has no dropout and never materialises probabilities: those cases take the exact reference.
    if implementation == "eager" or output_attentions:
        return eager_attention(query, key, value, key_padding_mask, scale=scale, dropout_p=dropout_p)
    if implementation == "triton" and dropout_p == 0.0:
        return fused_attention(query, key, value, key_padding_mask, scale=scale), None
    return sdpa_attention(query, key, value, key_padding_mask, scale=scale, dropout_p=dropout_p), None


def _unpad_empty_rows(key_padding_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Let items whose keys are all padding attend everywhere (no NaN), and say which they are.

    Their outputs are zeroed afterwards. Done without a host synchronisation, so it is safe inside CUDA graphs.
    """
    fully_padded = key_padding_mask.all(dim=-1)
    return key_padding_mask & ~fully_padded[:, None], fully_padded[:, None, None, None]


def eager_attention(query, key, value, key_padding_mask=None, *, scale, dropout_p=0.0):
    """Softmax in float32 then cast back, as Transformers' eager attention does."""
    scores = torch.matmul(query, key.transpose(-2, -1)) * scale
    fully_padded = None
    if key_padding_mask is not None:
        key_padding_mask, fully_padded = _unpad_empty_rows(key_padding_mask)
        scores = scores.masked_fill(key_padding_mask[:, None, None, :], torch.finfo(scores.dtype).min)
    probs = F.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    if fully_padded is not None:
        probs = probs.masked_fill(fully_padded, 0.0)
    if dropout_p > 0.0:
        probs = F.dropout(probs, p=dropout_p, training=True)
    return torch.matmul(probs, value), probs


def sdpa_attention(query, key, value, key_padding_mask=None, *, scale, dropout_p=0.0):
    """PyTorch SDPA with the padding as a boolean mask (True = attend)."""
    if key_padding_mask is None:
        return F.scaled_dot_product_attention(query, key, value, dropout_p=dropout_p, scale=scale)
    key_padding_mask, fully_padded = _unpad_empty_rows(key_padding_mask)
    keep = ~key_padding_mask[:, None, None, :]
    output = F.scaled_dot_product_attention(query, key, value, attn_mask=keep, dropout_p=dropout_p, scale=scale)
    return output.masked_fill(fully_padded, 0.0)


def key_padding_from_attention_mask(attention_mask: torch.Tensor | None, num_keys: int) -> torch.Tensor | None:
    """Turn a Transformers 4-D attention mask into a `(B, Nk)` key padding mask, if it is one.

    Transformers hands attention functions either a bool mask (True = attend) or an additive float mask,
    shaped `(B, 1 or H, 1 or Nq, Nk)`. A mask is key padding when it cannot vary over heads and queries: those
    dimensions have size 1 or stride 0 (broadcast). That is decided from the layout alone, never by reading the
    mask, so this costs no host synchronisation; anything else returns None and takes the general path.
    """
    if attention_mask is None:
        return None
    if attention_mask.dim() != 4 or attention_mask.shape[-1] != num_keys:
        raise ValueError(f"expected a (B, 1, Nq, {num_keys}) attention mask, got {tuple(attention_mask.shape)}")
    if any(attention_mask.shape[d] > 1 and attention_mask.stride(d) != 0 for d in (1, 2)):
        return None
    row = attention_mask[:, 0, 0, :]
    return ~row if row.dtype == torch.bool else row < -1e4


def transformers_triton_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """`AttentionInterface` entry: Transformers' calling convention around `attention`.

    Transformers passes `(B, H, N, D)` heads and expects `(B, N, H, D)` back. Masks that are not key
    padding (causal, per-query) and dropout go to Transformers' own SDPA function, unchanged.
    """
    key_padding_mask = key_padding_from_attention_mask(attention_mask, key.shape[2])
    if (attention_mask is not None and key_padding_mask is None) or getattr(module, "is_causal", False):
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(
            module, query, key, value, attention_mask, scaling=scaling, dropout=dropout, **kwargs
        )
    output, _ = attention(
        query, key, value, key_padding_mask, scale=scaling, dropout_p=dropout, implementation="triton"
    )
    return output.transpose(1, 2).contiguous(), None


def register_with_transformers() -> None:
    """Make `attn_implementation="triton"` valid for every Transformers model."""
    from transformers import AttentionInterface

    AttentionInterface.register("triton", transformers_triton_attention)
