"""Commands: one module per console script (cnntrain, -eval, -predict, -export, -reproduce), the
preflight that checks a `cnntrain` command before anything is written, and what every script shares
(one-line errors, exit status 2)."""
