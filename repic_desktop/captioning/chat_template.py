"""The official Qwen2.5-VL-Instruct chat template and Qwen's special tokens.

Kept free of heavy imports so that any module (or a test) can use these constants cheaply.
"""

# The chat template shipped in ``chat_template.json`` of the Qwen2.5-VL-*-Instruct checkpoints, verbatim.
# Supports the default system prompt, string or list content, images/videos and ``add_vision_id``.
QWEN25VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}"
    "{{ message['content'] }}<|im_end|>\n{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# Qwen2.5's special tokens in Qwen's own order (ids 151643..151656 in the real vocabulary).
# The demo model appends them, in this order, right after its small BPE vocabulary.
QWEN_SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)

# Added (non-special) tokens of the real Qwen2.5 tokenizer that a name in brackets could spell ("<tool_call>").
TOOL_TOKENS = ("<tool_call>", "</tool_call>")

EOS_TOKEN = "<|im_end|>"
PAD_TOKEN = "<|endoftext|>"

# What the template emits for one image in a message.
IMAGE_PLACEHOLDER = "<|vision_start|><|image_pad|><|vision_end|>"
