"""``ForecastConfig``: how one forecast pass decodes (steps in and out, greedy or sampled, the
grammar, batching), checked when it is made. :mod:`experiments.forecasting.generate` runs it."""

from __future__ import annotations

from dataclasses import dataclass

from experiments.forecasting.grammar import LLMTimeGrammar
from lvdata import DEFAULT_FORMAT, LLMTimeFormat

N_VARS = 2  # prey, predator


@dataclass(frozen=True)
class ForecastConfig:
    """How to forecast. ``k`` context steps in, ``m`` steps out.

    ``do_sample`` False: greedy, one sample. True: ``samples`` draws per trajectory at
    ``temperature`` / ``top_p``; ``band`` the quantiles of the sample band. ``batch_size``:
    trajectories per ``generate`` call (rows = ``batch_size * samples``). ``max_int_digits``:
    integer digits a generated number may have (scaled values up to ``10^D``; the real data's
    largest scaled value is about 30). ``max_new_tokens``: the per-row token bound (None: the
    grammar's, ``m`` steps of the longest numbers). ``use_cache`` False only for benchmarks
    (the budget's generation count assumes a KV cache, so it cannot be charged). ``fmt``: the
    LLMTIME format of the prompts (their precision and separators), which the output follows.
    """

    k: int = 50
    m: int = 50
    do_sample: bool = False
    samples: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    band: tuple[float, float] = (0.05, 0.95)
    constrained: bool = True
    batch_size: int = 8
    seed: int = 0
    max_int_digits: int = 3
    max_new_tokens: int | None = None
    use_cache: bool = True
    fmt: LLMTimeFormat = DEFAULT_FORMAT

    def __post_init__(self) -> None:
        for name in ("k", "m", "samples", "batch_size", "max_int_digits"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"ForecastConfig.{name} must be an int >= 1, got {getattr(self, name)!r}")
        if not self.do_sample and self.samples != 1:
            raise ValueError(f"greedy decoding gives one forecast per trajectory; got samples={self.samples} "
                             "(set do_sample=True to draw several)")
        if not (self.temperature > 0 and 0 < self.top_p <= 1):
            raise ValueError(f"need temperature > 0 and 0 < top_p <= 1, got {self.temperature}, {self.top_p}")
        low, high = self.band
        if not 0 <= low < high <= 1:
            raise ValueError(f"band must be two quantiles 0 <= low < high <= 1, got {self.band}")
        if self.max_new_tokens is not None and self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1 or None, got {self.max_new_tokens}")

    def grammar(self) -> LLMTimeGrammar:
        """The LLMTIME step grammar of this forecast: ``m`` steps of two numbers in ``fmt``."""
        return LLMTimeGrammar(n_steps=self.m, n_vars=N_VARS, max_int_digits=self.max_int_digits, fmt=self.fmt)

    @property
    def new_token_bound(self) -> int:
        """Tokens a row may generate: ``max_new_tokens``, or the grammar's bound (``m`` steps
        of the longest numbers). What the budget reserves per row before ``generate``."""
        return self.max_new_tokens or self.grammar().max_new_tokens

    @property
    def method_name(self) -> str:
        """A label for results tables, e.g. ``llm-greedy`` or ``llm-sampled-20-unconstrained``."""
        name = f"llm-sampled-{self.samples}" if self.do_sample else "llm-greedy"
        return name if self.constrained else f"{name}-unconstrained"
