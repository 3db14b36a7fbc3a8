"""The hand audit (`longdocvqa audit`): a person checks a seeded, task-stratified sample of published QA in a browser.

sample (what is audited, drawn from OUT/dataset), store (OUT/audit/verdicts.jsonl, appended under a lock), report
(accuracy with 95% Wilson intervals into the manifest and the card), evidence (page images and answer highlights),
app (the Starlette page, served by uvicorn) and command (what the CLI calls). Starlette and uvicorn come with the
`audit` extra and are imported only when the page is served. Does not own: the QA rows (hub/publish.py), the page
cache layout (runner/loop.py; read here by path), printing and exit codes (cli.py).
"""
