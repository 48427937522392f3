"""A tiny random-init Llama base built locally, so offline runs and tests need no model hub.

Production points the same loading code (``AutoModelForCausalLM.from_pretrained``) at a real checkpoint dir instead.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

OFFLINE_BASE_NAME = "offline-base-v1"
BOS, EOS, EOT, PAD = "<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>", "<|pad|>"
HEADER_START, HEADER_END = "<|start_header_id|>", "<|end_header_id|>"
SPECIAL_TOKENS = [PAD, BOS, EOS, EOT, HEADER_START, HEADER_END]
VOCAB_SIZE = 3000
SAMPLE_FAQ = Path(__file__).resolve().parents[2] / "data" / "sample" / "cloudmax_faq.jsonl"

# Llama-3 layout. The assistant turn is wrapped in {% generation %} so TRL's assistant_only_loss can mask the rest,
# and the generation prompt equals the assistant header of a full conversation, so prompt+completion tokenizes as
# the prompt's tokens followed by the completion's (what completion_only_loss relies on).
CHAT_TEMPLATE = (
    "{{- bos_token -}}"
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'assistant' -%}"
    "{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' -}}"
    "{%- generation -%}{{- message['content'] | trim -}}{{- '<|eot_id|>' -}}{%- endgeneration -%}"
    "{%- else -%}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + (message['content'] | trim)"
    " + '<|eot_id|>' -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' -}}{%- endif -%}"
)

_BUILTIN_CORPUS = """\
你是CloudMax的客服助手。您好，请问有什么可以帮您？感谢您的耐心等待，祝您生活愉快！
如何注册账号？打开官网点击右上角的“注册”，填写手机号并输入验证码即可完成注册。
忘记密码怎么办？在登录页点击“忘记密码”，通过绑定的手机号或邮箱重置密码。
如何修改绑定的手机号？进入“账号设置”-“安全中心”，验证原手机号后即可更换。
怎么申请发票？在控制台“费用中心”-“发票管理”中提交开票申请，电子发票会在三个工作日内发送到您的邮箱。
支持哪些付款方式？我们支持支付宝、微信支付、银行转账和企业对公汇款。
如何申请退款？在订单详情页点击“申请退款”，审核通过后款项将在七个工作日内原路退回。
云服务器如何续费？在控制台选择实例，点击“续费”，可以选择按月或按年续费，也可以开启自动续费。
实例到期后数据会保留多久？到期后实例会停机，数据保留十五天，请及时续费以免数据被释放。
如何升级配置？在实例列表中选择“变更配置”，可以升级CPU、内存和带宽，升级后需要重启生效。
对象存储的价格是多少？标准存储每GB每月0.12元，流量费用按实际使用量计算。
如何备份数据库？云数据库支持自动备份，默认每天备份一次，备份保留七天，也可以手动创建备份。
网站打不开怎么办？请先检查域名解析和安全组规则是否放行80和443端口，如仍无法访问请提交工单。
如何提交工单？登录控制台，点击“工单”-“新建工单”，选择问题类型并描述问题，我们会在两小时内响应。
客服工作时间是什么时候？在线客服7×24小时为您服务，电话客服工作时间为每天9:00至21:00。
如何开通企业认证？在“账号中心”上传营业执照并填写企业信息，审核一般在一个工作日内完成。
有没有免费试用？新用户可以免费试用云服务器一个月，配置为1核2G，带宽1Mbps。
如何设置安全组？在“网络与安全”中创建安全组规则，指定协议、端口范围和授权对象。
CDN怎么收费？CDN按流量或带宽峰值计费，可以在控制台切换计费方式，次月生效。
数据会不会丢失？我们的云盘采用三副本存储，数据可靠性达到99.9999999%。
如何联系技术支持？您可以拨打热线400-800-1234，或者发送邮件至support@cloudmax.com。
订单、账单、余额、充值、优惠券、代金券、套餐、流量包、带宽、域名、备案、证书、监控、告警、日志、镜像、快照。
请问还有其他问题吗？如果问题已经解决，请为本次服务评分，谢谢！
您的问题我们已经记录，技术人员会尽快处理并通过短信通知您。
"""

_ASCII_CORPUS = """\
Hello, how can I help you today? Please describe your problem and we will reply as soon as possible.
CloudMax ECS, OSS, CDN, RDS, VPC, SSL, DNS, API, SDK, HTTP 200 404 500, IPv4 IPv6, CPU GPU RAM SSD.
The quick brown fox jumps over the lazy dog. 0123456789 !"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~
Email: support@cloudmax.com  Phone: 400-800-1234  URL: https://www.cloudmax.com/docs/faq?id=42
system user assistant system user assistant system user assistant
"""


def _corpus() -> list[str]:
    lines = [*_BUILTIN_CORPUS.splitlines(), *_ASCII_CORPUS.splitlines()]
    if SAMPLE_FAQ.is_file():
        for raw in SAMPLE_FAQ.read_text(encoding="utf-8").splitlines():
            if raw.strip():
                row = json.loads(raw)
                lines.extend(v for v in row.values() if isinstance(v, str) and v)
    # Repeat so frequent customer-service phrases win merges over one-off strings.
    return [line for line in lines if line.strip()] * 3


def _build_tokenizer() -> PreTrainedTokenizerFast:
    raw = Tokenizer(models.BPE())
    # Byte-level: every string maps to bytes in the 256-symbol alphabet, so unseen Chinese still round-trips.
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    raw.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        min_frequency=2,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    raw.train_from_iterator(_corpus(), trainer=trainer)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=raw,
        bos_token=BOS,
        eos_token=EOT,
        pad_token=PAD,
        additional_special_tokens=[EOS, HEADER_START, HEADER_END],
        model_max_length=512,
        padding_side="left",
    )
    tok.chat_template = CHAT_TEMPLATE
    return tok


def build_offline_base(out_dir: Path, *, seed: int = 0) -> Path:
    """Build the tiny tokenizer + random-init Llama and ``save_pretrained`` both into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = _build_tokenizer()
    config = LlamaConfig(
        hidden_size=256,
        intermediate_size=512,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        tie_word_embeddings=True,
        max_position_embeddings=512,
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=[tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids(EOS)],
        pad_token_id=tokenizer.pad_token_id,
        do_sample=False,
    )
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def resolve_base_model(base: Path | None, cache_root: Path) -> Path:
    """Return ``base`` (a checkpoint dir) or the offline base, built once under ``cache_root``."""
    if base is not None:
        base = Path(base)
        if not (base / "config.json").is_file():
            raise ValueError(f"base model dir {base} has no config.json; pass a save_pretrained checkpoint dir")
        return base
    target = Path(cache_root) / OFFLINE_BASE_NAME
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{OFFLINE_BASE_NAME}-", dir=target.parent))
    try:
        build_offline_base(tmp)
        try:
            os.replace(tmp, target)
        except OSError:
            # Another process finished first (target now non-empty); its build is identical, keep it.
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
