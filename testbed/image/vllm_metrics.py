"""vLLM's Prometheus /metrics for the simulator: the names, labels and text format of
a real vLLM server, with values that count the requests this process served."""
import threading

# vLLM's buckets for vllm:time_to_first_token_seconds
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5,
                5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0)
# vLLM's engine finish reasons (a tool call finishes as "stop" inside the engine)
FINISHED_REASONS = ("stop", "length", "abort")


def _num(value):
    return repr(float(value))


class Metrics:
    def __init__(self, model_name, kv_capacity_tokens):
        self.model = model_name.replace("\\", "\\\\").replace('"', '\\"')
        self.kv_capacity_tokens = max(1, kv_capacity_tokens)
        self.lock = threading.Lock()
        self.running = {}  # request key -> tokens held in the KV cache
        self.prompt_tokens = 0
        self.generation_tokens = 0
        self.success = dict.fromkeys(FINISHED_REASONS, 0)
        self.ttft_counts = [0] * len(TTFT_BUCKETS)
        self.ttft_sum = 0.0
        self.ttft_count = 0

    def started(self, key, prompt_tokens):
        with self.lock:
            self.running[key] = prompt_tokens
            self.prompt_tokens += prompt_tokens

    def tokens(self, key, n):
        with self.lock:
            self.generation_tokens += n
            if key in self.running:
                self.running[key] += n

    def first_token(self, seconds):
        with self.lock:
            self.ttft_sum += seconds
            self.ttft_count += 1
            for i, le in enumerate(TTFT_BUCKETS):
                if seconds <= le:
                    self.ttft_counts[i] += 1

    def finished(self, key, reason):
        """reason: an API finish_reason ("stop", "length", "tool_calls") or "abort"."""
        with self.lock:
            self.running.pop(key, None)
            reason = "stop" if reason == "tool_calls" else reason
            self.success[reason] = self.success.get(reason, 0) + 1

    def render(self):
        m = f'model_name="{self.model}"'
        with self.lock:
            kv = min(1.0, sum(self.running.values()) / self.kv_capacity_tokens)
            lines = []

            def family(name, kind, help_text, samples):
                lines.append(f"# HELP {name} {help_text}")
                lines.append(f"# TYPE {name} {kind}")
                lines.extend(samples)

            family("vllm:num_requests_running", "gauge",
                   "Number of requests in model execution batches.",
                   [f"vllm:num_requests_running{{{m}}} {_num(len(self.running))}"])
            family("vllm:num_requests_waiting", "gauge",
                   "Number of requests waiting to be processed.",
                   [f"vllm:num_requests_waiting{{{m}}} 0.0"])
            family("vllm:kv_cache_usage_perc", "gauge",
                   "KV-cache usage. 1 means 100 percent usage.",
                   [f"vllm:kv_cache_usage_perc{{{m}}} {_num(kv)}"])
            family("vllm:num_preemptions_total", "counter",
                   "Cumulative number of preemption from the engine.",
                   [f"vllm:num_preemptions_total{{{m}}} 0.0"])
            family("vllm:prompt_tokens_total", "counter",
                   "Number of prefill tokens processed.",
                   [f"vllm:prompt_tokens_total{{{m}}} {_num(self.prompt_tokens)}"])
            family("vllm:generation_tokens_total", "counter",
                   "Number of generation tokens processed.",
                   [f"vllm:generation_tokens_total{{{m}}} {_num(self.generation_tokens)}"])
            family("vllm:request_success_total", "counter",
                   "Count of successfully processed requests.",
                   [f'vllm:request_success_total{{finished_reason="{r}",{m}}} {_num(n)}'
                    for r, n in self.success.items()])
            buckets = [f'vllm:time_to_first_token_seconds_bucket{{le="{le}",{m}}} {_num(n)}'
                       for le, n in zip(TTFT_BUCKETS, self.ttft_counts)]
            buckets.append(f'vllm:time_to_first_token_seconds_bucket{{le="+Inf",{m}}} '
                           f'{_num(self.ttft_count)}')
            family("vllm:time_to_first_token_seconds", "histogram",
                   "Histogram of time to first token in seconds.",
                   buckets + [
                       f"vllm:time_to_first_token_seconds_sum{{{m}}} {_num(self.ttft_sum)}",
                       f"vllm:time_to_first_token_seconds_count{{{m}}} "
                       f"{_num(self.ttft_count)}",
                   ])
        return "\n".join(lines) + "\n"
