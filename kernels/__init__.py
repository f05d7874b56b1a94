"""Triton kernels with PyTorch reference fallbacks: fused attention and the batched Hungarian matcher.

Files here import each other only as `from .x import y`: they are copied flat, beside the model code,
into every saved trust_remote_code folder.
"""
