"""The one entry point: ``complete`` (cache, then breaker, then provider)."""

import logging
import time
from dataclasses import dataclass

from django.conf import settings
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    wait_exponential_jitter,
)

from botfactory.metrics import CACHE_REQUESTS, LLM_DURATION, LLM_REQUESTS
from llm.breaker import CircuitBreaker
from llm.cache import ResponseCache, response_cache_key
from llm.client import ProviderError, chat_complete, provider_client_prepare
from llm.echo import echo_answer
from llm.errors import LlmUnavailableError
from llm.types import Completion, CompletionRequest

logger = logging.getLogger(__name__)

# An attempt with less time than this left is not started: it could only
# time out.
MIN_ATTEMPT_SECONDS = 0.05
# The lock of a call in flight outlives its holder's deadline by this much,
# so that it is never freed while the holder can still store its result.
LOCK_MARGIN_SECONDS = 0.5

_OUTCOMES = {"breaker_open": "rejected", "deadline": "deadline"}


@dataclass(frozen=True)
class _Config:
    provider: str
    base_url: str
    api_key: str | None
    model: str
    timeout_seconds: float
    max_attempts: int
    backoff_initial_seconds: float
    backoff_max_seconds: float
    cache_wait_seconds: float


def _config() -> _Config:
    return _Config(
        provider=settings.LLM_PROVIDER_NAME,
        base_url=settings.OPENAI_BASE_URL,
        api_key=settings.OPENAI_API_KEY,
        model=settings.LLM_MODEL,
        timeout_seconds=settings.LLM_TIMEOUT_SECONDS,
        max_attempts=settings.LLM_MAX_ATTEMPTS,
        backoff_initial_seconds=settings.LLM_BACKOFF_INITIAL_SECONDS,
        backoff_max_seconds=settings.LLM_BACKOFF_MAX_SECONDS,
        cache_wait_seconds=settings.LLM_CACHE_WAIT_SECONDS,
    )


def provider_prepare() -> None:
    """Build the configured provider's client before the first call needs it.

    A worker calls this as it starts, so its first burst of tasks does not
    wait for the client. Nothing to build for the built-in echo provider.
    """
    config = _config()
    if config.api_key is not None:
        provider_client_prepare(base_url=config.base_url, api_key=config.api_key)


def breaker_get(*, provider: str | None = None) -> CircuitBreaker:
    """Return the circuit breaker of ``provider`` (default: the configured one)."""
    return CircuitBreaker(
        provider=provider or settings.LLM_PROVIDER_NAME,
        threshold=settings.LLM_BREAKER_FAILURE_THRESHOLD,
        cooldown_seconds=settings.LLM_BREAKER_COOLDOWN_SECONDS,
        probe_ttl_seconds=settings.LLM_BREAKER_PROBE_TTL_SECONDS,
    )


def _deadline_error() -> LlmUnavailableError:
    return LlmUnavailableError(
        "The LLM did not answer before the deadline.", code="deadline"
    )


def _call_provider(
    config: _Config, request: CompletionRequest, *, model: str, timeout: float
) -> Completion:
    if config.api_key is None:
        text, prompt_tokens, completion_tokens = echo_answer(request.messages)
    else:
        answer = chat_complete(
            base_url=config.base_url,
            api_key=config.api_key,
            model=model,
            messages=request.messages,
            temperature=request.temperature,
            max_tokens=request.max_tokens,
            timeout_seconds=timeout,
        )
        text = answer.text
        prompt_tokens, completion_tokens = (
            answer.prompt_tokens,
            answer.completion_tokens,
        )

    return Completion(
        text=text,
        provider=config.provider,
        model=model,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        cached=False,
    )


class _Attempts:
    """One request's retry loop: tenacity's stop, wait and attempt steps."""

    def __init__(
        self,
        config: _Config,
        request: CompletionRequest,
        *,
        model: str,
        deadline: float,
    ) -> None:
        self.config = config
        self.request = request
        self.model = model
        self.deadline = deadline
        self.breaker = breaker_get(provider=config.provider)
        self.stopped_by_deadline = False
        self._backoff = wait_exponential_jitter(
            multiplier=config.backoff_initial_seconds,
            max=config.backoff_max_seconds,
            jitter=config.backoff_initial_seconds,
        )

    def wait(self, state: RetryCallState) -> float:
        pause = self._backoff(state)
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, ProviderError) and error.retry_after is not None:
            pause = max(pause, error.retry_after)

        return pause

    def stop(self, state: RetryCallState) -> bool:
        if state.attempt_number >= self.config.max_attempts:
            return True
        starts = time.monotonic() + state.upcoming_sleep
        if starts + MIN_ATTEMPT_SECONDS > self.deadline:
            self.stopped_by_deadline = True
            return True

        return False

    def before_sleep(self, state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        logger.warning(
            "LLM attempt %d failed for provider %s (%s, status %s); retrying in %.2f s",
            state.attempt_number,
            self.config.provider,
            getattr(error, "kind", "unknown"),
            getattr(error, "status", None),
            state.upcoming_sleep,
        )

    def attempt(self) -> Completion:
        remaining = self.deadline - time.monotonic()
        if remaining < MIN_ATTEMPT_SECONDS:
            self.stopped_by_deadline = True
            raise _deadline_error()
        admission = self.breaker.admit()
        if not admission.allowed:
            raise LlmUnavailableError(
                "The LLM provider's circuit breaker is open.", code="breaker_open"
            )

        try:
            completion = _call_provider(
                self.config,
                self.request,
                model=self.model,
                timeout=min(self.config.timeout_seconds, remaining),
            )
        except ProviderError as exc:
            if exc.counts:
                self.breaker.record_failure(admission)
            else:
                self.breaker.record_neutral(admission)
            raise
        self.breaker.record_success(admission)

        return completion

    def run(self) -> Completion:
        retrying = Retrying(
            retry=retry_if_exception(
                lambda exc: isinstance(exc, ProviderError) and exc.retryable
            ),
            wait=self.wait,
            stop=self.stop,
            before_sleep=self.before_sleep,
            sleep=time.sleep,
            reraise=True,
        )
        try:
            return retrying(self.attempt)
        except ProviderError as exc:
            raise self._give_up(exc) from None

    def _give_up(self, exc: ProviderError) -> LlmUnavailableError:
        if exc.kind == "quota":
            return LlmUnavailableError(
                "The LLM provider's quota is spent.", code="quota"
            )
        if not exc.retryable:
            return LlmUnavailableError(
                "The LLM provider refused the request.",
                code="client_error",
                extra={"status": exc.status},
            )
        if self.stopped_by_deadline or time.monotonic() >= self.deadline:
            return _deadline_error()

        return LlmUnavailableError(
            "The LLM provider failed on every attempt.", code="retries_exhausted"
        )


def _complete_uncached(
    config: _Config, request: CompletionRequest, *, model: str, deadline: float
) -> Completion:
    return _Attempts(config, request, model=model, deadline=deadline).run()


def _call_and_store(
    config: _Config,
    request: CompletionRequest,
    cache: ResponseCache,
    *,
    model: str,
    deadline: float,
) -> Completion:
    CACHE_REQUESTS.labels(cache="llm", result="miss").inc()
    completion = _complete_uncached(config, request, model=model, deadline=deadline)
    cache.put(completion, ttl_seconds=request.cache_ttl_seconds)

    return completion


def _complete_cached(
    config: _Config, request: CompletionRequest, *, model: str, deadline: float
) -> Completion:
    cache = ResponseCache(
        response_cache_key(provider=config.provider, model=model, request=request)
    )
    hit = cache.get()
    if hit is not None:
        CACHE_REQUESTS.labels(cache="llm", result="hit").inc()
        return hit

    wait_until = min(time.monotonic() + config.cache_wait_seconds, deadline)
    while True:
        lock_ttl = deadline - time.monotonic() + LOCK_MARGIN_SECONDS
        if cache.lock(ttl_seconds=lock_ttl):
            break
        waited = cache.wait(until=wait_until)
        if waited is not None:
            CACHE_REQUESTS.labels(cache="llm", result="hit").inc()
            return waited
        if time.monotonic() >= wait_until:
            # The call in flight is taking too long: call without the lock.
            return _call_and_store(
                config, request, cache, model=model, deadline=deadline
            )

    try:
        # The result may have landed between the first look and the lock.
        hit = cache.get()
        if hit is not None:
            CACHE_REQUESTS.labels(cache="llm", result="hit").inc()
            return hit
        return _call_and_store(config, request, cache, model=model, deadline=deadline)
    finally:
        cache.unlock()


def complete(request: CompletionRequest, *, deadline_seconds: float) -> Completion:
    """Answer ``request``: cache, then breaker, then the provider with retries.

    Transient failures (connection errors, timeouts, 408, 409, 429 other
    than a spent quota, 5xx, malformed answers) are retried with jittered
    exponential backoff, honouring ``retry-after``; no attempt and no pause
    runs past ``deadline_seconds`` from now. A ``cache_ttl_seconds`` above 0
    looks the answer up first and stores it; identical requests meanwhile
    wait for the one in flight.

    Raises LlmUnavailableError, whose ``code`` is ``breaker_open``,
    ``deadline``, ``retries_exhausted``, ``client_error`` or ``quota``.
    """
    started = time.monotonic()
    deadline = started + deadline_seconds
    config = _config()
    model = request.model or config.model
    outcome = "error"
    try:
        if request.cache_ttl_seconds > 0:
            completion = _complete_cached(
                config, request, model=model, deadline=deadline
            )
        else:
            completion = _complete_uncached(
                config, request, model=model, deadline=deadline
            )
        outcome = "cached" if completion.cached else "ok"
    except LlmUnavailableError as exc:
        outcome = _OUTCOMES.get(exc.code, "error")
        logger.warning(
            "LLM completion failed for provider %s: %s", config.provider, exc.code
        )
        raise
    finally:
        LLM_REQUESTS.labels(
            provider=config.provider, model=model, outcome=outcome
        ).inc()
        LLM_DURATION.labels(provider=config.provider).observe(
            time.monotonic() - started
        )

    return completion
