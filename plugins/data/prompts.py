"""Data source ``prompts``: a prompt list (a ``.txt`` file, one per line, a ``.jsonl`` file with a
"prompt" or "caption" key, or prompts inline) without data; for reward-only RL and the baselines
that need no data. Held out: ``held_out_file``, or the first ``held_out_count`` prompts."""

from __future__ import annotations

import attrs

from ddrl_framework.hookspecs import hookimpl
from ddrl_framework.kit.data_nodes import BatchLoader
from ddrl_framework.kit.files import existing_file, load_prompt_list, read_prompts
from ddrl_framework.types import DataBatch


@hookimpl
def register_data_sources(register):
    register("prompts", PromptList)


@attrs.frozen(kw_only=True)
class PromptList:
    file: str | None = None  # .txt (one prompt per line) or .jsonl ("prompt" / "caption" key)
    prompts: tuple[str, ...] = ()  # inline, instead of a file
    held_out_file: str | None = None  # evaluation prompts; default: the first held_out_count
    held_out_count: int = attrs.field(default=64, validator=attrs.validators.ge(1))
    _train: list[str] = attrs.field(init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "_train", load_prompt_list(self.file, self.prompts))

    def loader(self, batch_size: int, seed: int) -> BatchLoader:
        return BatchLoader(len(self._train), batch_size, seed,
                           lambda positions: DataBatch(prompts=tuple(self._train[i] for i in positions)))

    def held_out(self) -> DataBatch:
        if self.held_out_file is not None:
            return DataBatch(prompts=tuple(read_prompts(existing_file(self.held_out_file, "held_out_file"))))
        return DataBatch(prompts=tuple(self._train[: self.held_out_count]))
