"""How to cite MI CAM (the paper this tool implements)."""

from __future__ import annotations

PAPER_URL = "https://arxiv.org/abs/2507.09092"

BIBTEX = """@article{iyer2025micam,
  title   = {{MI CAM}: Mutual Information Weighted Activation Mapping for Causal Visual
             Explanations of Convolutional Neural Networks},
  author  = {Iyer, Ram S and others},
  journal = {arXiv preprint arXiv:2507.09092},
  year    = {2025},
  url     = {https://arxiv.org/abs/2507.09092}
}"""
