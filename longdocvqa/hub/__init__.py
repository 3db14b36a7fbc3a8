"""Hub adapter: the only code importing datasets and huggingface_hub.

- `publish`: the Hub-ready folder OUT/dataset/ (Parquet shards of the configs `sft`, `qa`, `documents`, Features,
  splits by document), written streaming.
- `card`: the dataset card (README.md: YAML header + body, histogram PNGs).
- `load`: reading a folder or a Hub repo the way a user would (`datasets.load_dataset`), and its card.
- `push`: the versioned upload to the Hub (one commit, one tag, resumable, refuses to overwrite a tag).

Heavy libraries (pyarrow, datasets, huggingface_hub) are imported inside functions, so importing this
package stays cheap.
"""
