"""The dataset contract exists once (longdocvqa/core/contract.py): the shards, the card, the validator and train/
read it.

train/ may not import the package, so it reads `train/dataset_schema.json`, the contract's JSON export; these tests
keep that file equal to the export, check that both Features builders (hub/features.py, train/schema.py) give the
Features the published Parquet files carry, and that the trainer refuses a dataset that lacks a column it reads.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_publish import Sample, cached_sample
from train_helpers import CARD_HEADER, REPO_ROOT

from longdocvqa.core import contract
from longdocvqa.hub.features import features_for
from longdocvqa.hub.load import load_config


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Sample:
    return cached_sample(tmp_path_factory)


def test_train_schema_file_equals_the_contract_export() -> None:
    path = REPO_ROOT / "train" / "dataset_schema.json"
    regenerate = (
        "python -c \"from longdocvqa.core.contract import schema_json; print(schema_json(), end='')\" > " + str(path)
    )
    assert path.read_text(encoding="utf-8") == contract.schema_json(), f"stale schema export; regenerate: {regenerate}"
    assert json.loads(path.read_text())["columns"].keys() == set(contract.CONFIGS)


def test_train_and_hub_build_the_same_features() -> None:
    from train import schema

    for config in contract.CONFIGS:
        assert schema.features(config) == features_for(config), config
        assert list(schema.columns(config)) == list(contract.COLUMNS[config])


@pytest.mark.slow
def test_published_parquet_carries_the_contract_features(sample: Sample) -> None:
    for config in contract.CONFIGS:
        for split, data in load_config(sample.dataset, config).items():
            assert data.features == features_for(config), (config, split)


@pytest.mark.slow
def test_trainer_loads_the_published_sft_config(sample: Sample) -> None:
    from train.sft import ScriptArguments, load_sft_dataset

    dataset = load_sft_dataset(ScriptArguments(dataset_name=str(sample.dataset)))
    assert list(dataset.column_names) == list(contract.COLUMNS["sft"])
    assert len(dataset) == sample_rows(sample.dataset, "sft")


@pytest.mark.slow
def test_trainer_refuses_a_dataset_without_num_tokens(sample: Sample, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    from train.sft import ScriptArguments, load_sft_dataset

    folder = tmp_path / "dataset"  # the sample's sft train shards without `num_tokens`, under a configs-only card
    (folder / "data" / "sft").mkdir(parents=True)
    for shard in (sample.dataset / "data" / "sft").glob("train-*.parquet"):
        pq.write_table(pq.read_table(shard).drop_columns(["num_tokens"]), folder / "data" / "sft" / shard.name)
    (folder / "README.md").write_text(CARD_HEADER, encoding="utf-8")
    with pytest.raises(ValueError, match=r"lacks the `sft` column\(s\) num_tokens of the published format"):
        load_sft_dataset(ScriptArguments(dataset_name=str(folder)))


def test_card_configs_come_from_the_contract() -> None:
    rows = {"sft": {"train": 3, "test": 1}, "qa": {"train": 2}, "documents": {"test": 0, "train": 1}}
    entries = contract.configs_yaml(rows)
    assert [e["config_name"] for e in entries] == list(contract.CONFIGS)
    assert entries[0]["default"] is True and contract.DEFAULT_CONFIG == "sft"
    assert entries[0]["data_files"] == [
        {"split": "train", "path": "data/sft/train-*"},
        {"split": "test", "path": "data/sft/test-*"},
    ]
    assert entries[2]["data_files"] == [{"split": "train", "path": "data/documents/train-*"}]


def sample_rows(folder: Path, config: str) -> int:
    """Rows of the `train` split of a config, from the card's own count."""
    from longdocvqa.hub.card import split_card

    header, _ = split_card((folder / "README.md").read_text(encoding="utf-8"))
    return int(header[contract.CARD_KEY]["counts"][config]["train"])


@pytest.mark.slow
def test_card_header_holds_the_contract_card_metadata(sample: Sample) -> None:
    from longdocvqa.hub.card import split_card

    header, _ = split_card((sample.dataset / "README.md").read_text(encoding="utf-8"))
    assert set(contract.REQUIRED_HEADER_KEYS) <= header.keys()
    block = header[contract.CARD_KEY]
    assert set(contract.CardMeta.model_fields) <= block.keys()  # every field written, none left to its default
    meta = contract.CardMeta.model_validate(block)
    assert meta.counts["sft"]["train"] == sample_rows(sample.dataset, "sft") > 0
    assert meta.num_tokens_total == sum(sum(per_task.values()) for per_task in meta.task_tokens.values()) > 0
