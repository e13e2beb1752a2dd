"""The page's fixed texts: header, how it works, citation, style."""

from __future__ import annotations

import os

from micam_core import METHODS
from micam_core.citation import BIBTEX

from .text import PAPER_URL, methods_table

CODE_URL = os.environ.get("MICAM_CODE_URL", "https://github.com/ramsiyer1/MI-CAM")  # the authors' code

CSS = """
#header h1 {margin: 0 0 0.1rem 0; font-size: 1.6rem;}
#header p {margin: 0; opacity: 0.85; font-size: 0.92rem;}
.cbar {display: flex; align-items: center; gap: 0.5rem; font-size: 0.85rem; opacity: 0.85; max-width: 640px;
       margin: 0 auto;}
.cbar img {flex: 1; height: 14px; min-width: 0; border-radius: 3px;}
#alert, #link-alert {border: 1px solid #e4a11b; background: rgba(228, 161, 27, 0.12); border-radius: 8px;
                     padding: 0.6rem 0.9rem;}
.panel-title p, .panel-title h3 {margin: 0.1rem 0; overflow-wrap: anywhere;}
.note {font-size: 0.9rem; opacity: 0.85;}
#explain-btn {min-height: 48px; font-size: 1.05rem;}
footer {display: none !important;}
/* the maps and pairs grids (blocks.py): as many equal columns as fit, more methods wrap */
.method-grid {display: grid; grid-template-columns: repeat(auto-fit, minmax(200px, 1fr)); gap: var(--layout-gap, 16px);}
.method-grid.pairs {grid-template-columns: repeat(auto-fit, minmax(260px, 1fr));}
.method-grid > .method-block {min-width: 0;}  /* equal columns: a method alone on its row keeps its width */
/* each method's counterfactual block (blocks.py): title, verdict, keep and remove photos with their top classes */
.method-block .method-title {margin: 0.2rem 0; font-size: 1.15rem; font-weight: 600;}
.method-block .flip {min-height: 2.4em; margin: 0.3rem 0 0.5rem;}
.pair {display: flex; gap: 8px;}
.cf-side {flex: 1 1 0; min-width: 0; margin: 0;}
/* each method's map block (blocks.py): its title above the overlay, the download button in the frame's corner */
.overlay-head {display: flex; align-items: flex-end; min-height: 2.7em; margin: 0.1rem 0 0.35rem;
               font-size: 0.95rem; overflow-wrap: anywhere;}
.overlay-dl {position: absolute; top: 6px; right: 6px; font-size: 0.75rem; padding: 0.05rem 0.45rem; opacity: 0.9;
             cursor: pointer; border-radius: 6px; border: 1px solid var(--border-color-primary);
             background: var(--block-background-fill);}
.overlay-dl:hover {border-color: var(--color-accent); opacity: 1;}
.overlay-img {height: 260px; position: relative;}
.cf-img {height: 170px;}
.cf-img, .overlay-img {display: flex; align-items: center; justify-content: center; overflow: hidden;
                       background: var(--block-background-fill); border: 1px solid var(--block-border-color);
                       border-radius: var(--block-radius);}
.zoomable {max-width: 100%; max-height: 100%; object-fit: contain; cursor: zoom-in;}
.cf-side .top {margin: 0.35rem 0 0; font-size: 0.82rem; overflow-wrap: anywhere;}
/* the one progress indicator: a bar that stays at the top of the window while work runs, with Cancel */
#status-bar {position: fixed; top: 0.6rem; left: 50%; transform: translateX(-50%); z-index: 1000;
             width: min(760px, calc(100vw - 1.2rem)); flex-wrap: nowrap !important; align-items: center !important;
             background: var(--background-fill-primary); border: 1px solid var(--color-accent);
             border-radius: 10px; padding: 0.2rem 0.5rem; box-shadow: 0 4px 18px rgba(0, 0, 0, 0.18); gap: 0.5rem;}
#status-bar:not(:has(#status:not(.hidden))) {display: none !important;}
#status-bar > * {min-width: 0 !important;}
#cancel-btn {flex: none !important; width: auto !important; min-width: 5rem !important; max-height: 2.2rem;}
.status-line {display: flex; align-items: center; gap: 0.7rem; font-size: 0.92rem; padding: 0.2rem 0;}
.status-line progress {width: 8rem; flex: none; accent-color: var(--color-accent);}
/* results that no longer match the controls */
#maps-panel.pending, #counterfactuals.pending, #maps-panel.updating, #counterfactuals.updating {position: relative;}
.pending img, .updating img {opacity: 0.35; filter: grayscale(0.7); transition: opacity 0.15s;}
#maps-panel.pending::before, #counterfactuals.pending::before, #maps-panel.updating::before,
#counterfactuals.updating::before {position: absolute; top: 0.3rem; right: 0.5rem; z-index: 20; font-size: 0.85rem;
    padding: 0.15rem 0.6rem; border-radius: 999px; background: #fff3cd; color: #664d03; border: 1px solid #e4a11b;}
#maps-panel.pending::before, #counterfactuals.pending::before {content: "Out of date: press Explain";}
#counterfactuals.pending::before {content: "Out of date: release the slider or press Explain";}
#maps-panel.updating::before, #counterfactuals.updating::before {content: "Updating ...";}
#metrics-hint {display: none;}
/* the metrics table (views.metrics_html): the method column stays in view while the table scrolls sideways */
.metrics-scroll {overflow-x: auto; border: 1px solid var(--block-border-color); border-radius: var(--block-radius);
                 background: var(--block-background-fill);}
.metrics-table {border-collapse: collapse; width: 100%; font-size: 0.88rem; font-variant-numeric: tabular-nums;}
.metrics-table th, .metrics-table td {padding: 0.4rem 0.65rem; text-align: right; vertical-align: top; min-width: 7rem;
                                      border: none; border-bottom: 1px solid var(--border-color-primary);}
.metrics-table thead th {vertical-align: bottom; font-weight: 600; background: var(--background-fill-secondary);}
.metrics-table th:first-child {text-align: left; min-width: 11rem; position: sticky; left: 0; z-index: 1;
                               background: var(--block-background-fill); font-weight: 600;}
.metrics-table thead th:first-child {background: var(--background-fill-secondary);}
.metrics-table tbody tr:last-child > * {border-bottom: none;}
/* file lists: whole names, wrapped, never "explanat...png" */
#downloads .file-name, #figure-files .file-name, #downloads td, #figure-files td {white-space: normal !important;
    overflow-wrap: anywhere !important; text-overflow: clip !important; max-width: none !important;}
@media (max-width: 640px) {
  #metrics-hint {display: block;}
  .metrics-scroll {box-shadow: inset -14px 0 10px -10px rgba(0, 0, 0, 0.25);}
  .metrics-table th:first-child {min-width: 8rem;}
  #header p {display: none;}
  .method-grid.maps {grid-template-columns: repeat(2, minmax(0, 1fr)); gap: 12px;}
  .overlay-img {height: 165px !important;}
  .cf-img {height: 135px !important;}
  .method-grid.pairs {grid-template-columns: minmax(0, 1fr);}
  /* long help texts stay short on a phone: a small scrolling box (a shadow says there is more), smaller type */
  #upsampling-note {max-height: 5.4em; overflow-y: auto; box-shadow: inset 0 -14px 10px -10px rgba(0, 0, 0, 0.25);}
  #upsampling-note p {font-size: 0.8rem;}
  #model-info p, #link-note p, #cf-intro p, #sanity-result p, #sanity-result li {font-size: 0.8rem;}
  .metrics-table thead th {font-size: 0.72rem; line-height: 1.2;}
  #inputs .info-text {display: none;}  /* the pickers' helper lines: their labels say enough on a phone */
  #examples .gallery {display: grid !important; grid-template-columns: repeat(4, 1fr); gap: 6px;}
  #examples .gallery-item {width: auto !important; min-width: 0 !important;}
  #examples .gallery-item .container {display: block !important; width: 100% !important; height: 64px !important;}
  #examples .gallery-item > span {display: block; width: 100%;}
  #examples .gallery-item img {width: 100% !important; max-width: none !important; height: 100% !important;
                               object-fit: cover;}
  #fill .wrap {flex-wrap: wrap; flex-direction: row !important;}
  #protocol .wrap {gap: 4px !important;}
  #protocol label {font-size: 0.8rem; padding: 2px 6px; line-height: 1.2;}  /* three long choices, kept short */
  /* the long method list scrolls in its own box, with a shadow that says there is more */
  #methods .wrap {max-height: 230px; overflow-y: auto; box-shadow: inset 0 -14px 10px -10px rgba(0, 0, 0, 0.25);}
}
#methods label {font-size: 0.85rem; padding: 2px 6px;}
#methods .wrap {max-height: 15rem; overflow-y: auto;}
#methods label.method-off {opacity: 0.45; cursor: not-allowed;}
"""


HEADER = f"""
# MI CAM Explorer
Which pixels made an image classifier decide? **MI CAM** weighs each feature map by its *mutual information* with the
image; compare it with **Grad-CAM**, **MI-Grad-CAM** and {len(METHODS) - 3} more CAM methods on the same layer, then
test the explanations with counterfactuals: keep or remove the highlighted region and see whether the prediction
changes.
[Paper (arXiv:2507.09092)]({PAPER_URL}){f" · [Authors' code]({CODE_URL})" if CODE_URL else ""}
"""

HOW_IT_WORKS = f"""
**MI CAM** takes the feature maps $A_k$ of a convolutional layer, weights each one by the mutual information
$w_k = I(X; A_k)$ between the (grey-scale) input image and that map, and shows
$\\mathrm{{ReLU}}(\\sum_k w_k A_k)$ upsampled to the image. The weights use no gradients and no class score, so
the MI CAM map is **class-agnostic**; Grad-CAM weights maps by the gradient of the target class score, and
MI-Grad-CAM multiplies the gradient of the target probability by each map's share of the mutual information.
Every method runs on the same layer, target and image, from one shared forward pass and one partial backward
pass (the methods marked *extra passes* add their own; the selector shows each one's cost):

{methods_table()}

**Transformers and other token models** (ViT, DeiT, EVA, Swin, MaxViT, Mixer, ...) are explained the same way
once a layer's output is laid out as a $K \\times h \\times w$ map: the class, distillation and register tokens are
dropped and the patch tokens are put back on the patch grid (channels-last grids are transposed). A *channel* is
then one embedding dimension over the patch grid; its gradients are read on the same grid. For ViTs that classify
from the class token the default layer is the last block's `norm1`, since the last block's patch tokens get no
gradient at all; other models default to their last stage or block.

**Counterfactuals.** The region where a map is at least the threshold is *kept* (everything else is filled) or
*removed* (filled); a good explanation keeps the prediction in the first case and flips or weakens it in the
second. *Average Drop* and *Increase in Confidence* follow Chattopadhay et al. (Grad-CAM++), *Drop %* and
*Increase %* are the MI CAM paper's variants on the thresholded keep image, and the deletion/insertion AUCs follow
Petsiuk et al. (RISE). A random map and a centred Gaussian are shown as baselines.

**Links.** Paper: [{PAPER_URL}]({PAPER_URL}) ·
The authors' code: [{CODE_URL}]({CODE_URL}) · This tool's code: the `micam_core` package and `app.py` in this
Space's files (Apache-2.0).

**Example photos**: from scikit-image's data folder (CC0 / public domain; see `examples/LICENSES.md`):
Chelsea the cat (Stefan van der Walt, CC0), coffee (Rachel Michetti, CC0), astronaut Eileen Collins (NASA,
public domain), Falcon 9 / DSCOVR launch (SpaceX, public domain).

**How to cite**
```bibtex
{BIBTEX}
```
"""


