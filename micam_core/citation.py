"""How to cite MI CAM (the paper this tool implements) and this tool.

The paper's authors are as arXiv lists them for 2507.09092 (Ram S Iyer, Narayan S Iyer, Rugmini Ammal P).
The tool has no named authors in its metadata; it is cited as its contributors.
"""

from __future__ import annotations

from .version import __version__

PAPER_URL = "https://arxiv.org/abs/2507.09092"

BIBTEX_PAPER = """@article{iyer2025micam,
  title   = {{MI CAM}: Mutual Information Weighted Activation Mapping for Causal Visual
             Explanations of Convolutional Neural Networks},
  author  = {Iyer, Ram S. and Iyer, Narayan S. and {Rugmini Ammal P}},
  journal = {arXiv preprint arXiv:2507.09092},
  year    = {2025},
  doi     = {10.48550/arXiv.2507.09092},
  url     = {https://arxiv.org/abs/2507.09092}
}"""

BIBTEX_TOOL = f"""@software{{micam_explorer,
  title   = {{{{MI CAM Explorer}}: {{MI CAM}} and the {{CAM}} methods it is compared with, with counterfactual
             checks, for timm image classifiers}},
  author  = {{{{MI CAM Explorer contributors}}}},
  version = {{{__version__}}},
  year    = {{2026}},
  license = {{Apache-2.0}},
  note    = {{Python package micam\\_core and the Gradio app app.py}}
}}"""

BIBTEX = BIBTEX_PAPER + "\n\n" + BIBTEX_TOOL
