"""The RaSD pre-training loss: pull voxels to their label's prototype, push prototypes apart.

Per sample b, with embeddings f(p) in R^E and labels y(p) in [0, K):

    P_k        = sum_p f(p) [y(p) = k] / (count_k + eps)                    (prototypes)
    seg        = mean_p  -log softmax_k(<P_k, f(p)> / tau)[y(p)]              (segmentation)
    dec        = mean_k  -log softmax_j(<P_k, P_j> / tau)[k]                  (decoupling)
    total      = seg + dec

Choices (also stated in the README notes):

* Averaging. Each term is a plain cross-entropy: the log-softmax runs over the labels, the mean
  runs over the voxels (segmentation) or over the present labels (decoupling), then over the
  samples of the batch. The published code also divides by the number of labels K (it takes the
  mean of the one-hot-times-log-probability tensor over labels and voxels). That scales both
  terms by the same 1/K, so their ratio is unchanged and AdamW, which is invariant to a constant
  loss scale up to its epsilon, takes the same steps; our loss values are K times theirs.
* Normalisation. With ``normalize=True`` (default) every voxel embedding is L2-normalised before
  the prototypes are formed and each prototype is L2-normalised again, so both inner products
  are cosine similarities and tau = 0.07 is the usual contrastive temperature (logits in
  [-1/tau, 1/tau]). ``normalize=False`` uses the raw inner products of the formula above.
* Absent labels. A label with no voxel in a sample is neither a prototype nor a logit: it is
  removed from both softmaxes and from the decoupling mean (so a sample with K' present labels
  is scored exactly as if only those K' labels existed).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

TAU = 0.07


class LossTerms(NamedTuple):
    """Scalars of one batch (each a 0-dim tensor; total = segmentation + decoupling)."""

    total: torch.Tensor
    segmentation: torch.Tensor
    decoupling: torch.Tensor


def _check(embeddings: torch.Tensor, labels: torch.Tensor, num_labels: int, tau: float,
           eps: float) -> None:
    if embeddings.dim() < 3:
        raise ValueError(f"embeddings must be [B, E, *S], got shape {tuple(embeddings.shape)}")
    expected = (embeddings.shape[0], *embeddings.shape[2:])
    if tuple(labels.shape) != expected:
        raise ValueError(f"labels must have shape {expected} to match embeddings "
                         f"{tuple(embeddings.shape)}, got {tuple(labels.shape)}")
    if labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise TypeError(f"labels must be an integer tensor, got {labels.dtype}")
    if not isinstance(num_labels, int) or num_labels < 1:
        raise ValueError(f"num_labels must be an int >= 1, got {num_labels!r}")
    if not tau > 0:
        raise ValueError(f"tau must be > 0, got {tau}")
    if not eps >= 0:
        raise ValueError(f"eps must be >= 0, got {eps}")


def prototypes(embeddings: torch.Tensor, labels: torch.Tensor, num_labels: int, *,
               eps: float = 1e-6, normalize: bool = True):
    """(features [B, E, V], prototypes [B, K, E], present [B, K] bool).

    features are the (normalised, if asked) voxel embeddings flattened over space; rows of
    absent labels in the prototypes are exactly zero.
    """
    b, e = embeddings.shape[:2]
    feats = embeddings.reshape(b, e, -1)
    if normalize:
        feats = F.normalize(feats, dim=1)
    onehot = F.one_hot(labels.reshape(b, -1).long(), num_labels).to(feats.dtype)  # [B, V, K]
    counts = onehot.sum(dim=1)                                                     # [B, K]
    present = counts > 0
    # An absent label gets denominator 1 (its sum is 0) so no 0/0 reaches the gradient.
    denom = torch.where(present, counts + eps, torch.ones_like(counts))
    protos = torch.bmm(onehot.transpose(1, 2), feats.transpose(1, 2)) / denom[..., None]
    if normalize:
        protos = F.normalize(protos, dim=2)
    return feats, protos, present


def rasd_loss(embeddings: torch.Tensor, labels: torch.Tensor, num_labels: int, *,
              tau: float = TAU, eps: float = 1e-6, normalize: bool = True) -> LossTerms:
    """RaSD loss of embeddings [B, E, *S] against integer labels [B, *S] in [0, num_labels).

    Computed in the embeddings' dtype if it is float64, else in float32 (so bf16/fp16 model
    outputs are scored in float32). See the module docstring for the averaging and
    normalisation choices.
    """
    _check(embeddings, labels, num_labels, tau, eps)
    if embeddings.dtype != torch.float64:
        embeddings = embeddings.float()
    feats, protos, present = prototypes(embeddings, labels, num_labels, eps=eps,
                                        normalize=normalize)
    absent = ~present

    # Segmentation: logits [B, K, V]; an absent label's logit is removed from the softmax.
    logits = torch.bmm(protos, feats) / tau
    logits = logits.masked_fill(absent[..., None], float("-inf"))
    target = labels.reshape(labels.shape[0], -1).long()
    seg = F.cross_entropy(logits, target, reduction="none").mean(dim=1)           # [B]

    # Decoupling: row k of softmax(P P^T / tau) should be one-hot at k (present labels only).
    gram = torch.bmm(protos, protos.transpose(1, 2)) / tau                         # [B, K, K]
    gram = gram.masked_fill(absent[:, None, :], float("-inf"))
    diag = torch.diagonal(torch.log_softmax(gram, dim=2), dim1=1, dim2=2)          # [B, K]
    row_ce = torch.where(present, -diag, torch.zeros_like(diag))
    dec = row_ce.sum(dim=1) / present.sum(dim=1)                                   # [B]

    seg, dec = seg.mean(), dec.mean()
    return LossTerms(seg + dec, seg, dec)


def consistency_loss(first: torch.Tensor, second: torch.Tensor, kind: str = "cosine"):
    """Agreement of two views' embeddings [B, E, *S] of the same anatomy.

    "cosine": mean over voxels of 1 - cos(f1(p), f2(p)); "mse": mean squared difference.
    """
    if first.shape != second.shape:
        raise ValueError(f"views must have equal shapes, got {tuple(first.shape)} and "
                         f"{tuple(second.shape)}")
    if first.dtype != torch.float64:
        first, second = first.float(), second.float()
    if kind == "cosine":
        return (1.0 - F.cosine_similarity(first, second, dim=1)).mean()
    if kind == "mse":
        return F.mse_loss(first, second)
    raise ValueError(f"consistency kind must be 'cosine' or 'mse', got {kind!r}")


class RaSDLoss(torch.nn.Module):
    """Module form of `rasd_loss` (holds num_labels, tau, eps, normalize)."""

    def __init__(self, num_labels: int, *, tau: float = TAU, eps: float = 1e-6,
                 normalize: bool = True) -> None:
        super().__init__()
        self.num_labels, self.tau, self.eps, self.normalize = num_labels, tau, eps, normalize

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> LossTerms:
        return rasd_loss(embeddings, labels, self.num_labels, tau=self.tau, eps=self.eps,
                         normalize=self.normalize)
