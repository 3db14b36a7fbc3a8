"""Hub adapter: the only code importing datasets and huggingface_hub.

- `publish`: the Hub-ready folder OUT/dataset/ (Parquet shards of the configs `sft`, `qa`, `documents`, splits by
  document), written streaming; the configs, columns and row converters are core/contract.py's.
- `features`: the contract's columns as `datasets.Features`.
- `stats`: what the card reports, counted while the rows stream past.
- `card`: the dataset card (README.md: YAML header + body, histogram PNGs).
- `benchmarks`: loading decontamination benchmarks (PDF folders, Hub datasets, JSONL) into the benchmark index.
- `load`: reading a folder or a Hub repo the way a user would (`datasets.load_dataset`), and its card.
- `push`: the versioned upload to the Hub (one commit, one tag, resumable, refuses to overwrite a tag).

Heavy libraries (pyarrow, datasets, huggingface_hub) are imported inside functions, so importing this
package stays cheap.
"""
