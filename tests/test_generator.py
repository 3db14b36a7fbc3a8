"""The Generator interface: `make_generator` picks the generator the recipe's `generator.kind` names, and the
build's questions (model calls? page images? prompt version, verifier, card name) are answered by it."""

from __future__ import annotations

import asyncio

import pytest
from llm_fixtures import real_document

from longdocvqa.core.errors import RecipeError
from longdocvqa.core.recipe_generate import GenerateConfig
from longdocvqa.generate import OpenAIGenerator, TemplateGenerator, generate_document, make_generator

OPENAI = {"kind": "openai", "endpoint": {"model": "gen-model", "base_url": "http://127.0.0.1:9/v1"}}


def test_the_factory_picks_the_generator_the_kind_names() -> None:
    template = make_generator(GenerateConfig())
    assert isinstance(template, TemplateGenerator)
    assert (template.name, template.prompt_version) == ("template-baseline (offline, from the layout)", "template-v2")
    assert not template.makes_model_calls and not template.needs_images and template.verifier_model is None
    assert template.open_clients(None) == (None, None)
    model = make_generator(GenerateConfig.model_validate({"generator": OPENAI, "prompt_version": "v1"}))
    assert isinstance(model, OpenAIGenerator)
    assert (model.name, model.prompt_version, model.makes_model_calls) == ("gen-model", "v1", True)
    assert model.needs_images and model.verifier_model is None


@pytest.mark.parametrize(("input_mode", "needs_images"), [("images", True), ("images+text", True), ("text", False)])
def test_the_model_generator_needs_images_unless_text_only(input_mode: str, needs_images: bool) -> None:
    config = GenerateConfig.model_validate({"generator": OPENAI, "input_mode": input_mode})
    assert make_generator(config).needs_images is needs_images


def test_the_verifier_is_the_verify_endpoint_or_the_generator() -> None:
    same = GenerateConfig.model_validate({"generator": OPENAI, "verify": {"enabled": True}})
    assert make_generator(same).verifier_model == "gen-model"
    other = {"enabled": True, "endpoint": {"model": "judge-model", "base_url": "http://127.0.0.1:9/v1"}}
    assert make_generator(GenerateConfig.model_validate({"generator": OPENAI, "verify": other})).verifier_model == (
        "judge-model"
    )
    verified_template = GenerateConfig.model_validate({"verify": other})  # the template baseline verifies nothing
    assert make_generator(verified_template).verifier_model is None


def test_only_the_model_generator_loads_prompt_files() -> None:
    missing = {"prompt_version": "v999"}
    make_generator(GenerateConfig.model_validate(missing)).check_prompts()  # templates are code: nothing to load
    with pytest.raises(RecipeError, match="no prompt file 'qa_v999.md'"):
        make_generator(GenerateConfig.model_validate({"generator": OPENAI, **missing})).check_prompts()


def test_the_model_generator_refuses_to_run_without_a_client() -> None:
    doc, layout, segments = real_document()
    config = GenerateConfig.model_validate({"generator": OPENAI, "input_mode": "text"})
    with pytest.raises(ValueError, match="needs an LLMClient"):
        asyncio.run(generate_document(doc, layout, segments, config, 0, None, None))
