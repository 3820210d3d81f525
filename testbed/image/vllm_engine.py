"""What the vLLM simulator answers, and when (stdlib only).

A request becomes a Plan: the prompt's token count, the model's raw output as a list of
tokens (reasoning closed by </think>, content, tool calls in the markup of the tool parser
the server was started with), what the client sees of each token after vLLM's parsers
(vllm_parsers.py), the finish reason, and the time each token is decoded. The tokenizer is
"one token = one whitespace-separated word, or one markup tag"; an output token is the word
with the whitespace that follows it.

Answers come from a rule table (JSON list, first match wins), matched case-insensitively
as a regex against the last user message (when the last message is a tool result, the
answer is "Here is what I found: <the result's first 60 words>" instead):
    {"match": REGEX, "content": TEXT}
    {"match": REGEX, "tool_call": {"name": N, "arguments": {...}}, "content": FALLBACK}
    optional "reasoning": TEXT (replaces the default reasoning words)
    {"match": REGEX, "raw": TEXT}  the model's raw output verbatim, markup included (the
                                   parsers decide what the client sees of it)
{0}, {1}, ... in strings (argument values included) become the regex's groups 1, 2, ...
"""
import json
import os
import re
import uuid

import simlib
import vllm_parsers

DEFAULT_RULES_FILE = "/opt/sim/rules.json"
DEFAULT_ANSWER = "I am a simulator and have no scripted answer for that."
DEFAULT_REASONING = ("Okay, the user wants an answer. Let me think about what they need, "
                     "check the facts, and then reply plainly without extra formatting.")
REASONING_FIELDS = ("reasoning", "reasoning_content", "both")
DELIVERIES = ("paced", "burst")


class Options:
    """What `vllm serve` was started with, as far as answers depend on it."""

    def __init__(self, *, served_name, max_model_len, reasoning_parser="none", tool_parser=None,
                 auto_tools=False):
        self.served_name = served_name
        self.max_model_len = max_model_len
        self.reasoning_parser = reasoning_parser
        self.tool_parser = tool_parser
        self.auto_tools = auto_tools


class RequestError(Exception):
    """A client error: becomes an HTTP status with vLLM's error JSON."""

    def __init__(self, status, message, kind="BadRequestError"):
        super().__init__(message)
        self.status = status
        self.kind = kind


class Settings:
    """The timing truth and behaviour switches, read once from the environment."""

    def __init__(self):
        self.ttft_ms = simlib.env_float("SIM_TTFT_MS", 50.0)
        self.prefill_ms_per_token = simlib.env_float("SIM_PREFILL_MS_PER_TOKEN", 0.0)
        self.decode_tok_s = simlib.env_float("SIM_DECODE_TOK_S", 50.0)
        self.chunk_tokens = max(1, simlib.env_int("SIM_CHUNK_TOKENS", 1))
        self.reasoning_tokens = max(0, simlib.env_int("SIM_REASONING_TOKENS", 12))
        self.reasoning_field = os.environ.get("SIM_REASONING_FIELD") or "reasoning"
        self.think_leak = os.environ.get("SIM_THINK_LEAK") == "1"
        self.arg_fragment_chars = max(1, simlib.env_int("SIM_ARG_FRAGMENT_CHARS", 8))
        self.think_in_output = os.environ.get("SIM_THINK_IN_OUTPUT") == "1"
        self.delivery = os.environ.get("SIM_DELIVERY") or "paced"
        self.burst_tokens = max(0, simlib.env_int("SIM_BURST_TOKENS", 0))
        if self.delivery not in DELIVERIES:
            raise ValueError(f"SIM_DELIVERY must be one of {', '.join(DELIVERIES)}")
        if self.decode_tok_s <= 0:
            raise ValueError("SIM_DECODE_TOK_S must be > 0")
        if self.reasoning_field not in REASONING_FIELDS:
            raise ValueError(f"SIM_REASONING_FIELD must be one of {', '.join(REASONING_FIELDS)}")


# --- tokenizer ---------------------------------------------------------------------------

def count_words(text):
    return len(text.split())


split_tokens = vllm_parsers.split_words


def text_of(content):
    """A message's content as text: a string, or the text parts of a list of parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return str(content)


# --- rules -------------------------------------------------------------------------------

def load_rules():
    """The rule table from SIM_RULES_JSON, else SIM_RULES_FILE, else /opt/sim/rules.json.
    Raises ValueError on a malformed table (the simulator then refuses to start)."""
    text = os.environ.get("SIM_RULES_JSON")
    source = "SIM_RULES_JSON"
    if not text:
        source = os.environ.get("SIM_RULES_FILE") or DEFAULT_RULES_FILE
        if not os.path.exists(source):
            return source, []
        with open(source, encoding="utf-8") as fh:
            text = fh.read()
    try:
        table = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"{source}: not JSON: {exc}") from None
    if not isinstance(table, list):
        raise ValueError(f"{source}: must be a JSON list of rules")
    rules = []
    for n, rule in enumerate(table):
        if not isinstance(rule, dict) or not isinstance(rule.get("match"), str):
            raise ValueError(f"{source}: rule {n} needs a \"match\" regex string")
        if "content" not in rule and "tool_call" not in rule and "raw" not in rule:
            raise ValueError(f"{source}: rule {n} needs \"content\", \"tool_call\" or \"raw\"")
        call = rule.get("tool_call")
        if call is not None and not (isinstance(call, dict) and isinstance(call.get("name"), str)
                                     and isinstance(call.get("arguments", {}), dict)):
            raise ValueError(f"{source}: rule {n}: tool_call needs a \"name\" and an "
                             "\"arguments\" object")
        try:
            pattern = re.compile(rule["match"], re.IGNORECASE)
        except re.error as exc:
            raise ValueError(f"{source}: rule {n}: bad regex {rule['match']!r}: {exc}") from None
        rules.append((pattern, rule))
    return source, rules


def _fill(value, groups):
    """Replace {0}, {1}, ... in every string inside value by the regex groups."""
    if isinstance(value, str):
        return re.sub(r"\{(\d+)\}",
                      lambda m: groups[int(m.group(1))] if int(m.group(1)) < len(groups)
                      else m.group(0), value)
    if isinstance(value, list):
        return [_fill(v, groups) for v in value]
    if isinstance(value, dict):
        return {k: _fill(v, groups) for k, v in value.items()}
    return value


def match_rule(rules, text):
    """The first rule whose regex is found in text, with its placeholders filled in."""
    for pattern, rule in rules:
        m = pattern.search(text)
        if m:
            return _fill(rule, [g or "" for g in m.groups()])
    return {"content": DEFAULT_ANSWER}


# --- the plan ----------------------------------------------------------------------------

class Plan:
    """One request's answer and schedule.

    tokens: the model's raw output tokens, already cut at max_tokens (each takes one decode
    slot: token i is decoded at due(i)). chunks: what the client sees, as (token_index, kind,
    text), kind in reasoning / content / header / arguments, sent when token_index is decoded;
    up to SIM_CHUNK_TOKENS tokens of one kind share a chunk (sent with the last of them).
    message: the non-streaming answer (reasoning, content, tool_calls as (name, arguments)).
    """

    def __init__(self, *, prompt_tokens, tokens, pieces, finish_reason, message, settings):
        self.prompt_tokens = prompt_tokens
        self.tokens = tokens
        self.finish_reason = finish_reason
        self.message = message
        self.tool_id = "chatcmpl-tool-" + uuid.uuid4().hex
        self.first_token_s = (settings.ttft_ms
                              + settings.prefill_ms_per_token * prompt_tokens) / 1000.0
        self.token_interval_s = 1.0 / settings.decode_tok_s
        self.chunks = []
        group = None  # [token_index, kind, text, count]
        for index, token_pieces in enumerate(pieces):
            for kind, text in token_pieces:
                if group and kind == group[1] and kind != "header" \
                        and group[3] < settings.chunk_tokens:
                    group[0], group[2], group[3] = index, group[2] + text, group[3] + 1
                    continue
                if group:
                    self.chunks.append(tuple(group[:3]))
                group = [index, kind, text, 1]
        if group:
            self.chunks.append(tuple(group[:3]))

    @property
    def completion_tokens(self):
        return len(self.tokens)

    def due(self, token_index):
        """Seconds after the request start at which this token is decoded."""
        return self.first_token_s + token_index * self.token_interval_s

    def text(self):
        return "".join(self.tokens)


def check_model(payload, options):
    model = payload.get("model")
    if model not in (None, options.served_name):
        raise RequestError(404, f"The model `{model}` does not exist.", "NotFoundError")


def plan_chat(payload, rules, settings, options):
    messages = payload.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RequestError(400, "messages: a non-empty list is required")
    check_model(payload, options)
    tools = payload.get("tools") or []
    choice = payload.get("tool_choice")
    if tools and choice in (None, "auto") and not (options.auto_tools and options.tool_parser):
        raise RequestError(400, '"auto" tool choice requires --enable-auto-tool-choice and '
                                "--tool-call-parser to be set")
    prompt_tokens = sum(count_words(text_of(m.get("content"))) for m in messages
                        if isinstance(m, dict))
    if tools:
        prompt_tokens += count_words(json.dumps(tools))
    last_user = next((text_of(m.get("content")) for m in reversed(messages)
                      if isinstance(m, dict) and m.get("role") == "user"), "")
    kwargs = payload.get("chat_template_kwargs") or {}
    thinking = kwargs.get("enable_thinking", True) is not False
    rule = None
    if isinstance(messages[-1], dict) and messages[-1].get("role") == "tool":
        # a tool result came back: answer from it instead of calling the tool again
        result = " ".join(text_of(messages[-1].get("content")).split()[:60])
        rule = {"content": f"Here is what I found: {result}"}
    cap = _cap(payload, options, prompt_tokens)
    rule = rule or match_rule(rules, last_user)
    offered = {t.get("function", {}).get("name") for t in tools if isinstance(t, dict)}
    guided = isinstance(choice, dict) or choice == "required"
    if isinstance(choice, dict):  # a named function: only that one may be called
        offered &= {choice.get("function", {}).get("name")}
    call = rule.get("tool_call")
    use_tool = bool(call and tools and choice != "none" and call["name"] in offered)
    if guided:
        return _plan_guided(rule, call if use_tool else None, thinking, cap, prompt_tokens,
                            settings)
    parse_tools = bool(tools) and choice != "none" and options.tool_parser is not None
    tokens = _raw_output(rule, call if use_tool else None, thinking, options.tool_parser,
                         settings)
    finish = "stop"
    if len(tokens) > cap:
        tokens, finish = tokens[:cap], "length"
    tool_parser = options.tool_parser if parse_tools else None
    pieces = vllm_parsers.stream_pieces(tokens, reasoning_parser=options.reasoning_parser,
                                        tool_parser=tool_parser, thinking=thinking, tools=tools)
    reasoning, content = vllm_parsers.split_reasoning(options.reasoning_parser, "".join(tokens),
                                                      thinking)
    calls = []
    if tool_parser and content:
        content, calls = vllm_parsers.extract_calls(tool_parser, content, tools)
    message = {"reasoning": reasoning, "content": content, "tool_calls": calls,
               "finish_reason": "tool_calls" if calls else finish}
    if any(kind == "header" for p in pieces for kind, _ in p):
        finish = "tool_calls"  # streaming: once the parser has begun a call, even if cut off
    return Plan(prompt_tokens=prompt_tokens, tokens=tokens, pieces=pieces, finish_reason=finish,
                message=message, settings=settings)


def plan_completion(payload, rules, settings, options):
    check_model(payload, options)
    prompt = payload.get("prompt")
    if isinstance(prompt, list):
        prompt = " ".join(str(p) for p in prompt)
    if not isinstance(prompt, str):
        raise RequestError(400, "prompt: a string is required")
    prompt_tokens = count_words(prompt)
    cap = _cap(payload, options, prompt_tokens)
    rule = match_rule(rules, prompt)
    tokens = _raw_output(rule, None, False, None, settings)
    finish = "stop"
    if len(tokens) > cap:
        tokens, finish = tokens[:cap], "length"
    pieces = [[("content", t)] for t in tokens]
    return Plan(prompt_tokens=prompt_tokens, tokens=tokens, pieces=pieces, finish_reason=finish,
                message={"reasoning": None, "content": "".join(tokens), "tool_calls": [],
                         "finish_reason": finish},
                settings=settings)


def _cap(payload, options, prompt_tokens):
    """max_tokens as vLLM checks it: the prompt and the answer must fit in --max-model-len."""
    limit = options.max_model_len
    if prompt_tokens > limit:
        raise RequestError(400, f"This model's maximum context length is {limit} tokens. "
                                f"However, your request has {prompt_tokens} input tokens. "
                                "Please reduce the length of the input messages.")
    cap = payload.get("max_completion_tokens")
    if cap is None:
        cap = payload.get("max_tokens")
    if cap is None:
        return limit - prompt_tokens
    if not isinstance(cap, int) or isinstance(cap, bool) or cap < 1:
        raise RequestError(400, f"max_tokens must be at least 1, got {cap}.")
    if prompt_tokens + cap > limit:
        raise RequestError(400, f"'max_tokens' or 'max_completion_tokens' is too large: {cap}. "
                                f"This model's maximum context length is {limit} tokens and "
                                f"your request has {prompt_tokens} input tokens ({cap} > "
                                f"{limit} - {prompt_tokens}).")
    return cap


def _reasoning_words(rule, settings):
    reasoning = rule.get("reasoning")
    if reasoning is None:
        words = DEFAULT_REASONING.split()
        reasoning = " ".join(words[i % len(words)] for i in range(settings.reasoning_tokens))
    return reasoning


def _raw_output(rule, call, thinking, tool_parser, settings):
    """The model's raw output tokens: [<think>] reasoning </think> (thinking on, or the
    SIM_THINK_LEAK fault), then the answer: a tool call in tool_parser's markup, or content."""
    if "raw" in rule:
        return vllm_parsers.tokenize(rule["raw"])
    tokens = []
    reasoning = _reasoning_words(rule, settings)
    leak = not thinking and settings.think_leak and reasoning
    if thinking or leak:
        if settings.think_in_output or leak:
            tokens.append(vllm_parsers.THINK_START + ("\n" if leak else ""))
        tokens += split_tokens(reasoning)
        tokens.append(vllm_parsers.THINK_END + ("\n\n" if leak else ""))
    if call is not None:
        return tokens + _call_markup(call, tool_parser, settings)
    content = rule.get("content")
    if content is None:
        content = DEFAULT_ANSWER
    return tokens + split_tokens(content)


def _call_markup(call, tool_parser, settings):
    args = call.get("arguments", {})
    if tool_parser == "qwen3_coder":
        tokens = ["<tool_call>\n", f"<function={call['name']}>\n"]
        for key, value in args.items():
            text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
            tokens += [f"<parameter={key}>\n", *split_tokens(text), "</parameter>\n"]
        return tokens + ["</function>\n", "</tool_call>"]
    # hermes (and the text a server without a tool parser would show)
    text = json.dumps(args, ensure_ascii=False)
    step = settings.arg_fragment_chars
    return (["<tool_call>\n", '{"name": ' + json.dumps(call["name"]) + ', "arguments": ']
            + [text[i:i + step] for i in range(0, len(text), step)] + ["}\n", "</tool_call>"])


def _plan_guided(rule, call, thinking, cap, prompt_tokens, settings):
    """tool_choice named or "required": vLLM decodes the arguments JSON under a grammar and
    streams it as tool-call deltas, no parser involved."""
    tokens, pieces = [], []
    if thinking:
        for t in split_tokens(_reasoning_words(rule, settings)):
            tokens.append(t)
            pieces.append([("reasoning", t)])
    finish, calls = "stop", []
    if call is not None:
        args = json.dumps(call.get("arguments", {}), ensure_ascii=False)
        step = settings.arg_fragment_chars
        for n, i in enumerate(range(0, len(args), step)):
            tokens.append(args[i:i + step])
            pieces.append(([("header", call["name"])] if n == 0 else [])
                          + [("arguments", args[i:i + step])])
        finish, calls = "tool_calls", [(call["name"], args)]
    else:
        content = rule.get("content")
        for t in split_tokens(DEFAULT_ANSWER if content is None else content):
            tokens.append(t)
            pieces.append([("content", t)])
    if len(tokens) > cap:
        tokens, pieces, finish = tokens[:cap], pieces[:cap], "length"
        calls = []
    reasoning = "".join(t for p in pieces for k, t in p if k == "reasoning") or None
    content = "".join(t for p in pieces for k, t in p if k == "content")
    if call is not None:
        content = None
    message = {"reasoning": reasoning, "content": content, "tool_calls": calls,
               "finish_reason": finish}
    return Plan(prompt_tokens=prompt_tokens, tokens=tokens, pieces=pieces, finish_reason=finish,
                message=message, settings=settings)
