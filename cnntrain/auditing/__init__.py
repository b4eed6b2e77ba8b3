"""The data audit (cnntrain-audit): likely label errors, duplicates and leaks across splits, and outliers, found
from out-of-fold predictions of K fold runs and written as CSVs, a cleaned label file and audit.html.

One job per module: keys.py (each image's stable key, through the same fold assembly the runs used),
folds.py (out-of-fold probabilities and embeddings from the fold runs), label_issues.py (cleanlab's confident
learning), duplicates.py (content hash, perceptual hash, embedding similarity), outliers.py (embedding
outliers and odd files), tables.py (the CSVs and the cleaned label file), page.py (audit.html), run.py (all
of it over a set of fold runs; result.py what it found). The command that trains the folds is
cnntrain/commands/audit.py.
"""
