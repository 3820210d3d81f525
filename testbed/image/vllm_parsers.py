"""vLLM's reasoning and tool-call parsers, as the simulator plays them (stdlib only).

The simulated model writes raw text the way the real models do (reasoning closed by
</think>, tool calls inside <tool_call>...</tool_call>); the parsers named by
--reasoning-parser and --tool-call-parser then decide, token by token, what the client
sees: a `reasoning` delta, a `content` delta, a tool-call header or arguments fragment,
or nothing at all (a swallowed token). Modelled on vLLM 0.11-0.17
(vllm/reasoning/*_reasoning_parser.py, vllm/entrypoints/openai/tool_parsers/*):

reasoning parsers (streaming)
  none         every token is content, <think> and </think> included
  qwen3        thinking off (the template closes the think block in the prompt): content.
               Thinking on: reasoning until </think> (or <tool_call>, kept as content);
               no </think> at all: the whole answer is reasoning and content stays empty
  deepseek_r1  as qwen3, but <tool_call> inside reasoning stays reasoning
  nano_v3      NVIDIA's plugin for Nemotron 3 Nano: deepseek_r1 while streaming
non-streaming, with thinking off and no </think> in the output, deepseek_r1 returns the whole
answer as reasoning (content null), which nano_v3 swaps back and qwen3 never does.

tool parsers (only when the request offers tools with tool_choice "auto")
  hermes       <tool_call>{"name": N, "arguments": {...}}</tool_call>: the tags are
               swallowed, a header {index, id, type, function: {name}} once the name is
               read, then the arguments as they arrive (the outer closing brace held back)
  qwen3_coder  <tool_call><function=N><parameter=K>V</parameter></function></tool_call>:
               header {.., function: {name, arguments: ""}}, then "{", one
               `"K": V` fragment per finished parameter (V typed by the tool's schema), "}"
Text a parser swallows and cannot parse (a malformed call) gives no delta at all.
"""
import json
import re

REASONING_PARSERS = ("none", "qwen3", "deepseek_r1", "nano_v3")
TOOL_PARSERS = ("hermes", "qwen3_coder")
THINK_START, THINK_END = "<think>", "</think>"
TOOL_START, TOOL_END = "<tool_call>", "</tool_call>"
MARKUP = re.compile(r"(</?think>|</?tool_call>|<function=[^>\s]*>|</function>|"
                    r"<parameter=[^>\s]*>|</parameter>)")


# --- tokens ------------------------------------------------------------------------------

def split_words(text):
    """'Paris is  nice.' -> ['Paris ', 'is  ', 'nice.'] (leading whitespace dropped)."""
    return re.findall(r"\S+\s*", text)


def tokenize(text):
    """Raw model text as tokens: each markup tag (with the whitespace after it) is one token,
    other text one token per word with its trailing whitespace."""
    tokens = []
    for n, part in enumerate(MARKUP.split(text)):
        if n % 2:  # a tag
            tokens.append(part)
        elif tokens and MARKUP.fullmatch(tokens[-1]):
            ws = len(part) - len(part.lstrip())
            tokens[-1] += part[:ws]
            tokens += split_words(part[ws:])
        else:
            tokens += split_words(part)
    return tokens


def tag(token):
    return token.strip()


# --- streaming ---------------------------------------------------------------------------

class ReasoningStream:
    """One request's reasoning parser: feed raw tokens, get (kind, text) pieces."""

    def __init__(self, parser, thinking):
        self.parser = parser
        # thinking off: the chat template put "<think>\n\n</think>" in the prompt, which
        # vLLM's serving layer sees (prompt_is_reasoning_end) and routes everything to content
        self.ended = parser == "none" or not thinking

    def feed(self, token):
        if self.ended:
            return [("content", token)]
        t = tag(token)
        if t == THINK_START:
            return []
        if t == THINK_END:
            self.ended = True
            rest = token[token.index(THINK_END) + len(THINK_END):]
            return [("content", rest)] if rest else []
        if t == TOOL_START and self.parser == "qwen3":
            self.ended = True  # qwen3: an implicit end of reasoning, kept for the tool parser
            return [("content", token)]
        return [("reasoning", token)]


class HermesStream:
    def __init__(self, tools):
        self.in_call = False
        self.called = False
        self.buf = ""
        self.name = None
        self.args_sent = 0

    def feed(self, token):
        t = tag(token)
        if not self.in_call:
            if t == TOOL_START:
                self.in_call, self.buf, self.name, self.args_sent = True, "", None, 0
                return []
            return [("content", token)]
        if t == TOOL_END:
            self.in_call = False
            return []
        self.buf += token
        out = []
        if self.name is None:
            m = re.search(r'"name"\s*:\s*"([^"]*)"', self.buf)
            if not m:
                return []
            self.name = m.group(1)
            self.called = True
            out.append(("header", self.name))
        m = re.search(r'"arguments"\s*:\s*', self.buf)
        if m:
            args = _balanced_prefix(self.buf[m.end():])
            if len(args) > self.args_sent:
                out.append(("arguments", args[self.args_sent:]))
                self.args_sent = len(args)
        return out


def _balanced_prefix(text):
    """The part of text up to where its first JSON object closes (all of it while open)."""
    depth, in_str, esc = 0, False, False
    for i, ch in enumerate(text):
        if in_str:
            esc = not esc and ch == "\\"
            if ch == '"' and not esc:
                in_str = False
            continue
        if ch == '"':
            in_str = True
        elif ch in "{[":
            depth += 1
        elif ch in "}]":
            depth -= 1
            if depth == 0:
                return text[:i + 1]
    return text


def param_types(tools, name):
    """{parameter: JSON schema type} of the offered tool `name`."""
    for t in tools or []:
        fn = t.get("function", {}) if isinstance(t, dict) else {}
        if fn.get("name") == name:
            props = (fn.get("parameters") or {}).get("properties") or {}
            return {k: (v.get("type") if isinstance(v, dict) else None) for k, v in props.items()}
    return {}


def convert_param(value, kind):
    """A qwen3_coder parameter's text as its schema says (unknown: kept as a string)."""
    if value.lower() == "null":
        return None
    try:
        if kind == "integer":
            return int(value)
        if kind == "number":
            return float(value)
        if kind == "boolean":
            return {"true": True, "false": False}[value.lower()]
        if kind in ("object", "array"):
            return json.loads(value)
    except (ValueError, KeyError):
        return value
    return value


class Qwen3CoderStream:
    def __init__(self, tools):
        self.tools = tools
        self.in_call = False
        self.called = False
        self.types = {}
        self.key = None
        self.value = ""
        self.params = 0

    def feed(self, token):
        t = tag(token)
        if not self.in_call:
            if t == TOOL_START:
                self.in_call, self.key, self.params = True, None, 0
                return []
            return [("content", token)]
        if t == TOOL_END:
            self.in_call = False
            return []
        if t.startswith("<function="):
            name = t[len("<function="):-1]
            self.types = param_types(self.tools, name)
            self.called = True
            return [("header", name)]
        if t.startswith("<parameter="):
            self.key, self.value = t[len("<parameter="):-1], ""
            self.params += 1
            return [("arguments", "{")] if self.params == 1 else []
        if t == "</parameter>" and self.key is not None:
            value = convert_param(self.value.strip("\n"), self.types.get(self.key))
            frag = (", " if self.params > 1 else "") + json.dumps(self.key) + ": " + \
                json.dumps(value, ensure_ascii=False)
            self.key = None
            return [("arguments", frag)]
        if t == "</function>":
            return [("arguments", "}" if self.params else "{}")] if self.called else []
        if self.key is not None:
            self.value += token
        return []


TOOL_STREAMS = {"hermes": HermesStream, "qwen3_coder": Qwen3CoderStream}


def stream_pieces(tokens, *, reasoning_parser, tool_parser, thinking, tools):
    """For each raw token, the pieces the client sees: [(kind, text)], kind in reasoning,
    content, header (text = the function name), arguments. tool_parser None: no tool parsing."""
    reasoning = ReasoningStream(reasoning_parser, thinking)
    calls = TOOL_STREAMS[tool_parser](tools) if tool_parser else None
    out = []
    for token in tokens:
        pieces = []
        for kind, text in reasoning.feed(token):
            if kind == "content" and calls is not None:
                pieces += calls.feed(text)
            else:
                pieces.append((kind, text))
        out.append([(k, x) for k, x in pieces if x or k == "header"])
    return out


# --- non-streaming -----------------------------------------------------------------------

def split_reasoning(parser, text, thinking):
    """(reasoning or None, content or None) of a whole answer, as extract_reasoning does."""
    if parser == "none":
        return None, text
    before, found, after = text.partition(THINK_START)
    text = after if found else before
    end, call = text.find(THINK_END), text.find(TOOL_START)
    if parser == "qwen3":
        if end == -1 and call == -1:
            return (text, None) if thinking else (None, text)
        if end != -1 and (call == -1 or end <= call):
            reasoning, _, content = text.partition(THINK_END)
            return reasoning, content or None
        return text[:call] or None, text[call:]
    if end == -1:  # deepseek_r1, and nano_v3 before its swap
        reasoning, content = text, None
        if parser == "nano_v3" and not thinking:
            reasoning, content = content, reasoning
        return reasoning, content
    reasoning, _, content = text.partition(THINK_END)
    return reasoning or None, content or None


def extract_calls(parser, text, tools):
    """(content or None, [(name, arguments JSON)]) of a whole answer; unparsable: no calls."""
    start = text.find(TOOL_START)
    if start == -1:
        return text, []
    calls = []
    for body in re.findall(r"<tool_call>(.*?)(?:</tool_call>|$)", text[start:], re.S):
        try:
            if parser == "hermes":
                obj = json.loads(body)
                calls.append((obj["name"], json.dumps(obj.get("arguments", {}), ensure_ascii=False)))
            else:
                name = re.search(r"<function=([^>\s]*)>", body).group(1)
                types = param_types(tools, name)
                args = {k: convert_param(v.strip("\n"), types.get(k)) for k, v in
                        re.findall(r"<parameter=([^>\s]*)>(.*?)</parameter>", body, re.S)}
                calls.append((name, json.dumps(args, ensure_ascii=False)))
        except (ValueError, KeyError, TypeError, AttributeError):
            return text, []
    return (text[:start] if text[:start].strip() else None), calls
