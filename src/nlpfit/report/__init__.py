"""Reports of a run: the model card (`card.py`, OUT/README.md) and the run report page (`html.py`, OUT/report.html)."""
