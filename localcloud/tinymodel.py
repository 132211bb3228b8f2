"""A tiny gated model and chat dataset built at run time, for the demo and the end-to-end test: nothing downloaded.

The model is a randomly initialised Llama (a real architecture `trl sft` and `from_pretrained` load as they would
Llama 3) with a byte-level BPE tokenizer trained here with `tokenizers` on the dataset's own text, and a chat
template. Needs the `train` extra (torch, transformers, tokenizers).
"""
from __future__ import annotations

import functools
import json
import tempfile
from pathlib import Path

CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>\n{{ message['content'] }}{{ eos_token }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)

_MOLECULES = ["aspirin", "caffeine", "ibuprofen", "paracetamol", "metformin", "atorvastatin", "warfarin", "penicillin",
              "morphine", "quinine", "nicotine", "dopamine", "serotonin", "insulin", "heparin", "lidocaine"]
_PROPS = [("crosses the blood-brain barrier", "yes", "no"), ("is orally bioavailable", "likely", "unlikely"),
          ("is hepatotoxic at therapeutic doses", "no", "yes"), ("inhibits CYP3A4", "weakly", "no")]


def chat_rows(n: int = 64) -> list[dict]:
    """A small TxGemma-flavoured instruction set: a question about a molecule's property and a short answer."""
    rows = []
    for i in range(n):
        mol = _MOLECULES[i % len(_MOLECULES)]
        prop, yes, no = _PROPS[(i // len(_MOLECULES)) % len(_PROPS)]
        answer = yes if (i * 7) % 3 else no
        rows.append({"messages": [{"role": "user", "content": f"Does {mol} say it {prop}?"},
                                  {"role": "assistant", "content": f"Answer: {answer}."}]})
    return rows


def build_dataset(n: int = 64) -> dict[str, bytes]:
    rows = "\n".join(json.dumps(r) for r in chat_rows(n)) + "\n"
    card = ("---\nlicense: cc-by-4.0\ntask_categories:\n- text-generation\nconfigs:\n- config_name: default\n"
            "  data_files:\n  - split: train\n    path: train.jsonl\n---\n# tiny-chat\nMolecule property Q&A built by"
            " hfgate's demo.\n")
    return {"train.jsonl": rows.encode(), "README.md": card.encode()}


def _bpe():
    """A byte-level BPE tokenizer trained on the dataset's own text (a `tokenizers.Tokenizer`), with its specials."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    specials = ["<unk>", "<s>", "</s>", "<pad>", "<|user|>", "<|assistant|>", "<|system|>"]
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    corpus = [m["content"] for r in chat_rows(256) for m in r["messages"]]
    bpe.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=384, special_tokens=specials,
                                                        show_progress=False,
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return bpe, specials


@functools.lru_cache(maxsize=None)
def seed_model(seed: int = 0, hidden: int = 64, layers: int = 2) -> dict[str, bytes]:
    """The same architecture and tokenizer as `build_model`, written without torch or transformers (numpy,
    `tokenizers`, `safetensors`; about 0.2 s instead of ~9 s of CPU): what the local cloud seeds every safetensors
    repo of seed.toml with, so a fresh cloud's models load and train (`from_pretrained`, `trl sft`, LoRA). Random
    weights, N(0, 0.02) as Llama initialises them, norms at one; deterministic for a seed."""
    import numpy as np
    from safetensors.numpy import save

    bpe, specials = _bpe()
    vocab = bpe.get_vocab_size()
    ids = {t: bpe.token_to_id(t) for t in specials[:4]}
    heads, kv_heads = 4, 2
    head_dim = hidden // heads
    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": vocab,
              "hidden_size": hidden, "intermediate_size": hidden * 2, "num_hidden_layers": layers,
              "num_attention_heads": heads, "num_key_value_heads": kv_heads, "head_dim": head_dim,
              "max_position_embeddings": 256, "rms_norm_eps": 1e-06, "hidden_act": "silu",
              "bos_token_id": ids["<s>"], "eos_token_id": ids["</s>"], "pad_token_id": ids["<pad>"],
              "tie_word_embeddings": True, "dtype": "float32", "use_cache": True}
    rng = np.random.default_rng(seed)

    def normal(*shape: int):
        return rng.normal(0.0, 0.02, size=shape).astype(np.float32)
    tensors = {"model.embed_tokens.weight": normal(vocab, hidden),
               "model.norm.weight": np.ones(hidden, dtype=np.float32)}
    for i in range(layers):
        p = f"model.layers.{i}."
        tensors |= {p + "input_layernorm.weight": np.ones(hidden, dtype=np.float32),
                    p + "post_attention_layernorm.weight": np.ones(hidden, dtype=np.float32),
                    p + "self_attn.q_proj.weight": normal(heads * head_dim, hidden),
                    p + "self_attn.k_proj.weight": normal(kv_heads * head_dim, hidden),
                    p + "self_attn.v_proj.weight": normal(kv_heads * head_dim, hidden),
                    p + "self_attn.o_proj.weight": normal(hidden, heads * head_dim),
                    p + "mlp.gate_proj.weight": normal(hidden * 2, hidden),
                    p + "mlp.up_proj.weight": normal(hidden * 2, hidden),
                    p + "mlp.down_proj.weight": normal(hidden, hidden * 2)}
    tokenizer_config = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<s>", "eos_token": "</s>",
                        "unk_token": "<unk>", "pad_token": "<pad>", "extra_special_tokens": specials[4:],
                        "model_max_length": 256}
    generation = {"bos_token_id": ids["<s>"], "eos_token_id": ids["</s>"], "pad_token_id": ids["<pad>"]}
    card = ("---\nlicense: apache-2.0\nlibrary_name: transformers\npipeline_tag: text-generation\n---\n# tiny Llama\n"
            "Randomly initialised, seeded by hfgate's local cloud (localcloud/tinymodel.py).\n")
    return {"config.json": json.dumps(config, indent=2).encode(),
            "generation_config.json": json.dumps(generation, indent=2).encode(),
            "model.safetensors": save(tensors, metadata={"format": "pt"}),
            "tokenizer.json": bpe.to_str().encode(),
            "tokenizer_config.json": json.dumps(tokenizer_config, indent=2).encode(),
            "chat_template.jinja": CHAT_TEMPLATE.encode(),
            "README.md": card.encode()}


def build_model(seed: int = 0, hidden: int = 64, layers: int = 2) -> dict[str, bytes]:
    """config.json, model.safetensors, tokenizer files and a gated model card: {path: bytes}."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
    from transformers.utils import logging as tlogging
    tlogging.disable_progress_bar()

    bpe, specials = _bpe()
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                                  pad_token="<pad>", additional_special_tokens=specials[4:])
    tok.chat_template = CHAT_TEMPLATE

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=hidden, intermediate_size=hidden * 2,
                         num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=256, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id, tie_word_embeddings=True)
    model = LlamaForCausalLM(config)
    card = ("---\nlicense: apache-2.0\nextra_gated_prompt: You agree to use this model for the hfgate demo only.\n"
            "library_name: transformers\npipeline_tag: text-generation\n---\n# tiny gated Llama\nRandomly"
            " initialised, built by hfgate's demo. Gated: accept the terms on the model page.\n")
    with tempfile.TemporaryDirectory() as d:
        model.save_pretrained(d)
        tok.save_pretrained(d)
        files = {p.relative_to(d).as_posix(): p.read_bytes() for p in Path(d).rglob("*") if p.is_file()}
    files["README.md"] = card.encode()
    return files
