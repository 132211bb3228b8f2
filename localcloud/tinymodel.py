"""A tiny gated model and chat dataset built at run time, for the demo and the end-to-end test: nothing downloaded.

The model is a randomly initialised Llama (a real architecture `trl sft` and `from_pretrained` load as they would
Llama 3) with a byte-level BPE tokenizer trained here with `tokenizers` on the dataset's own text, and a chat
template. Needs the `train` extra (torch, transformers, tokenizers).
"""
from __future__ import annotations

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


def build_model(seed: int = 0, hidden: int = 64, layers: int = 2) -> dict[str, bytes]:
    """config.json, model.safetensors, tokenizer files and a gated model card: {path: bytes}."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
    from transformers.utils import logging as tlogging
    tlogging.disable_progress_bar()

    specials = ["<unk>", "<s>", "</s>", "<pad>", "<|user|>", "<|assistant|>", "<|system|>"]
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    corpus = [m["content"] for r in chat_rows(256) for m in r["messages"]]
    bpe.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=384, special_tokens=specials,
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
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
