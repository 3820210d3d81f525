"""vLLM's Prometheus /metrics for the simulator: the names, labels and text format of
a real vLLM (v1 engine, 0.11+) server, with values that count the requests this process
served. Every sample carries model_name and engine="0"; labels are in prometheus_client's
order (sorted by name). The timing histograms hold the server-side truth: when each token was
decoded, whatever the delivery (SIM_DELIVERY=burst holds tokens back, not these figures)."""
import threading

# vLLM's buckets (vllm/v1/metrics/loggers.py)
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5,
                5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0)
ITL_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0,
               7.5, 10.0, 20.0, 40.0, 80.0)
REQUEST_BUCKETS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0,
                   60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0)
# vLLM's engine finish reasons (a tool call finishes as "stop" inside the engine)
FINISHED_REASONS = ("stop", "length", "abort")
ENGINE = "0"
# request-level histograms: name -> (help, buckets); observed once a request finishes
REQUEST_HISTOGRAMS = {
    "vllm:e2e_request_latency_seconds": "Histogram of e2e request latency in seconds.",
    "vllm:request_queue_time_seconds": "Histogram of time spent in WAITING phase for request.",
    "vllm:request_inference_time_seconds": "Histogram of time spent in RUNNING phase for "
                                           "request.",
    "vllm:request_prefill_time_seconds": "Histogram of time spent in PREFILL phase for request.",
    "vllm:request_decode_time_seconds": "Histogram of time spent in DECODE phase for request.",
}


def _num(value):
    return repr(float(value))


def _labels(model, **extra):
    pairs = dict(extra, engine=ENGINE, model_name=model)
    return ",".join(f'{k}="{v}"' for k, v in sorted(pairs.items()))


class Histogram:
    def __init__(self, buckets):
        self.buckets = buckets
        self.counts = [0] * len(buckets)
        self.sum = 0.0
        self.count = 0

    def observe(self, value):
        self.sum += value
        self.count += 1
        for i, le in enumerate(self.buckets):
            if value <= le:
                self.counts[i] += 1

    def samples(self, name, model):
        out = [f"{name}_bucket{{{_labels(model, le=le)}}} {_num(n)}"
               for le, n in zip(self.buckets, self.counts)]
        out.append(f'{name}_bucket{{{_labels(model, le="+Inf")}}} {_num(self.count)}')
        out.append(f"{name}_count{{{_labels(model)}}} {_num(self.count)}")
        out.append(f"{name}_sum{{{_labels(model)}}} {_num(self.sum)}")
        return out


class Metrics:
    def __init__(self, model_name, kv_capacity_tokens):
        self.model = model_name.replace("\\", "\\\\").replace('"', '\\"')
        self.kv_capacity_tokens = max(1, kv_capacity_tokens)
        self.lock = threading.Lock()
        self.running = {}  # request key -> tokens held in the KV cache
        self.prompt_tokens = 0
        self.generation_tokens = 0
        self.success = dict.fromkeys(FINISHED_REASONS, 0)
        self.ttft = Histogram(TTFT_BUCKETS)
        self.itl = Histogram(ITL_BUCKETS)
        self.tpot = Histogram(ITL_BUCKETS)
        self.request = {name: Histogram(REQUEST_BUCKETS) for name in REQUEST_HISTOGRAMS}
        self.prompt_hist = Histogram(tuple(float(2 ** i) for i in range(18)))
        self.generation_hist = Histogram(tuple(float(2 ** i) for i in range(18)))

    def started(self, key, prompt_tokens):
        with self.lock:
            self.running[key] = prompt_tokens
            self.prompt_tokens += prompt_tokens

    def decoded(self, key, seconds, first):
        """One token decoded, `seconds` after the request arrived (first) or after the
        previous token (inter-token latency)."""
        with self.lock:
            self.generation_tokens += 1
            if key in self.running:
                self.running[key] += 1
            (self.ttft if first else self.itl).observe(seconds)

    def finished(self, key, reason, t0=None, decoded=None):
        """reason: an API finish_reason ("stop", "length", "tool_calls") or "abort"; t0 and
        decoded (monotonic times the request arrived and each token was decoded) for a request
        that finished."""
        with self.lock:
            prompt = self.running.pop(key, None)
            reason = "stop" if reason == "tool_calls" else reason
            self.success[reason] = self.success.get(reason, 0) + 1
            if t0 is None or decoded is None:
                return
            end = decoded[-1] if decoded else t0
            first = decoded[0] if decoded else end
            observed = {"vllm:e2e_request_latency_seconds": end - t0,
                        "vllm:request_queue_time_seconds": 0.0,
                        "vllm:request_inference_time_seconds": end - t0,
                        "vllm:request_prefill_time_seconds": first - t0,
                        "vllm:request_decode_time_seconds": end - first}
            for name, value in observed.items():
                self.request[name].observe(value)
            if len(decoded) > 1:
                self.tpot.observe((end - first) / (len(decoded) - 1))
            if prompt is not None:  # the KV tokens held: the prompt plus the decoded tokens
                self.prompt_hist.observe(prompt - len(decoded))
            self.generation_hist.observe(len(decoded))

    def render(self):
        m = _labels(self.model)
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
                   [f"vllm:request_success_total{{{_labels(self.model, finished_reason=r)}}} "
                    f"{_num(n)}" for r, n in self.success.items()])
            family("vllm:request_prompt_tokens", "histogram",
                   "Number of prefill tokens processed.",
                   self.prompt_hist.samples("vllm:request_prompt_tokens", self.model))
            family("vllm:request_generation_tokens", "histogram",
                   "Number of generation tokens processed.",
                   self.generation_hist.samples("vllm:request_generation_tokens", self.model))
            family("vllm:time_to_first_token_seconds", "histogram",
                   "Histogram of time to first token in seconds.",
                   self.ttft.samples("vllm:time_to_first_token_seconds", self.model))
            family("vllm:inter_token_latency_seconds", "histogram",
                   "Histogram of inter-token latency in seconds.",
                   self.itl.samples("vllm:inter_token_latency_seconds", self.model))
            family("vllm:request_time_per_output_token_seconds", "histogram",
                   "Histogram of time_per_output_token_seconds per request.",
                   self.tpot.samples("vllm:request_time_per_output_token_seconds", self.model))
            for name, help_text in REQUEST_HISTOGRAMS.items():
                family(name, "histogram", help_text, self.request[name].samples(name, self.model))
        return "\n".join(lines) + "\n"
