"""RePIC's own captioning script as a whole process, for `caption_bench.py --processes` (not run alone).

What RePIC's caption_eval_multi_2.py does from process start: import torch and transformers, load the
model and processor, then per photo apply_chat_template -> fetch_image per image -> processor -> generate.
Prints one JSON line: phase times (s) and the captions.

    python bench/repic_loop_process.py MODEL_DIR JOB.json
"""
from __future__ import annotations

import json
import sys
import time

T0 = time.perf_counter()

import torch  # noqa: E402
from transformers import AutoModelForImageTextToText  # noqa: E402

sys.path.insert(0, __file__.rsplit("/bench/", 1)[0])
from repic_desktop.captioning.processor import load_processor  # noqa: E402
from repic_desktop.captioning.prompt import QUERY_PREFIX, ImageRef, fetch_image  # noqa: E402


def main() -> int:
    model_dir, job_file = sys.argv[1], sys.argv[2]
    job = json.loads(open(job_file).read())
    t_import = time.perf_counter()
    model = AutoModelForImageTextToText.from_pretrained(model_dir, dtype=torch.float32).eval()
    processor = load_processor(model_dir, max_pixels=job["max_pixels"])  # RePIC: AutoProcessor(max_pixels=)
    t_load = time.perf_counter()
    captions = {}
    nt = job["new_tokens"]
    for photo in job["photos"]:
        content = []
        for i, c in enumerate(job["concepts"], start=1):
            content.append({"type": "image", "image": c["ref"]})
            content.append({"type": "text", "text": f"{i}. Name: <{c['name']}>, Info: {c['info']}"})
        content.append({"type": "image", "image": photo})
        content.append({"type": "text", "text": QUERY_PREFIX + job["request"]})
        message = [{"role": "system", "content": job["system"]}, {"role": "user", "content": content}]
        text = processor.apply_chat_template(message, tokenize=False, add_generation_prompt=True)
        images = [fetch_image(ImageRef(x["image"])) for x in content if x["type"] == "image"]
        inputs = processor(text=[text], images=images, padding=True, return_tensors="pt")
        out = model.generate(**inputs, use_cache=True, max_new_tokens=nt, min_new_tokens=nt, do_sample=False)
        trimmed = [o[len(i):] for i, o in zip(inputs.input_ids, out)]
        captions[photo] = processor.batch_decode(trimmed, skip_special_tokens=True,
                                                 clean_up_tokenization_spaces=False)[0]
    t_loop = time.perf_counter()
    print(json.dumps({"import": t_import - T0, "load": t_load - t_import, "loop": t_loop - t_load,
                      "captions": captions}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
