"""langchain-tests' standard unit tests for chat models, run against MedGemmaChat."""

from __future__ import annotations

from langchain_tests.unit_tests import ChatModelUnitTests

from medgraph.agents import MedGemmaChat


class TestMedGemmaChatStandard(ChatModelUnitTests):
    """Construction, tool binding, structured output and tracing params, as LangChain has them."""

    @property
    def chat_model_class(self) -> type[MedGemmaChat]:
        return MedGemmaChat

    @property
    def chat_model_params(self) -> dict[str, object]:
        # Weights load lazily on first use, so these tests never touch a checkpoint.
        return {"model": "google/medgemma-4b-it"}

    @property
    def has_tool_calling(self) -> bool:
        return True

    @property
    def has_structured_output(self) -> bool:
        return True

    @property
    def supports_image_inputs(self) -> bool:
        return True

    @property
    def init_from_env_params(self) -> tuple[dict[str, str], dict[str, object], dict[str, object]]:
        env = {"MEDGRAPH_MODELS__API_KEY": "sk-test", "MEDGRAPH_MODELS__BASE_URL": "http://h:1/v1"}
        return env, {"engine": "openai"}, {"api_key": "sk-test", "base_url": "http://h:1/v1"}
