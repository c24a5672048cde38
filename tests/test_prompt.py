"""RePIC's prompt, byte for byte: golden renderings, order, images, tags, special tokens."""
from __future__ import annotations

import pytest
from PIL import Image

from repic_desktop.captioning.prompt import (
    DEFAULT_REQUEST, MAX_PIXELS, SYSTEM_PROMPTS, CaptionPrompt, ImageRef, PromptConcept, PromptError,
    build_prompt, fetch_image, parse_tags, render, resolve_request, smart_resize, verify_rendered, visual_tokens,
)
from repic_desktop.core.library import Box

IMG = "<|vision_start|><|image_pad|><|vision_end|>"
SYS = ("<|im_start|>system\nYou are a captioning assistant. Your task is to generate an accurate caption for the "
       "query image.\nBelow is additional information about the reference images.<|im_end|>\n<|im_start|>user\n")
TAIL = "This is the query image. Give a personalized caption of this image.<|im_end|>\n<|im_start|>assistant\n"

ANYA = PromptConcept("Anya", "A young girl with pink hair and big green eyes.", (ImageRef("/db/Anya.jpg"),))
BOND = PromptConcept("Bond", "A white dog wearing a black bow tie.", (ImageRef("/db/Bond.jpg"),))
AVENGERS = [PromptConcept(n, i, (ImageRef(f"/db/{n}.jpg"),)) for n, i in [
    ("thor", "The god of thunder with a hammer."), ("Iron Man", "A hero in a red and gold suit."),
    ("black widow", "A spy with red hair."), ("captain america", "A soldier with a round shield.")]]


def test_golden_one_concept():
    p = CaptionPrompt((ANYA,), ImageRef("/q.jpg"))
    assert render(p) == (SYS + IMG + "1. Name: <Anya>, Info: A young girl with pink hair and big green eyes."
                         + IMG + TAIL)


def test_golden_two_concepts_matches_repic_method_example():
    p = CaptionPrompt((ANYA, BOND), ImageRef("/q.jpg"))
    assert render(p) == (
        SYS + IMG + "1. Name: <Anya>, Info: A young girl with pink hair and big green eyes."
        + IMG + "2. Name: <Bond>, Info: A white dog wearing a black bow tie." + IMG + TAIL)
    assert [r.path for r in p.images()] == ["/db/Anya.jpg", "/db/Bond.jpg", "/q.jpg"]


def test_golden_four_concepts_with_multi_word_names():
    p = CaptionPrompt(tuple(AVENGERS), ImageRef("/group.jpg"))
    lines = ["1. Name: <thor>, Info: The god of thunder with a hammer.",
             "2. Name: <Iron Man>, Info: A hero in a red and gold suit.",
             "3. Name: <black widow>, Info: A spy with red hair.",
             "4. Name: <captain america>, Info: A soldier with a round shield."]
    assert render(p) == SYS + "".join(IMG + line for line in lines) + IMG + TAIL


def test_notebook_preset_and_style():
    p = CaptionPrompt((ANYA,), ImageRef("/q.jpg"), "Give a detailed personalized caption of the image.",
                      SYSTEM_PROMPTS["repic-no-duplication"], style="notebook")
    text = render(p)
    assert ("for the query image while referencing the given reference images without duplication.\nBelow is "
            "additional information about the reference images.<|im_end|>") in text
    assert IMG + "Name: <Anya>, Info: A young girl" in text
    assert text.endswith("This is the query image. Give a detailed personalized caption of the image.<|im_end|>\n"
                         "<|im_start|>assistant\n")


def test_render_equals_the_processors_chat_template(demo_model_dir):
    from repic_desktop.captioning.processor import load_processor

    proc = load_processor(demo_model_dir)
    for concepts in [(ANYA,), (ANYA, BOND), tuple(AVENGERS), ()]:
        p = CaptionPrompt(concepts, ImageRef("/q.jpg"))
        assert render(p) == proc.apply_chat_template(p.messages(), tokenize=False, add_generation_prompt=True)


def test_several_references_per_concept_come_before_its_line():
    two = PromptConcept("Anya", "Pink hair.", (ImageRef("/a1.jpg"), ImageRef("/a2.jpg", (1, 2, 3, 4))))
    p = CaptionPrompt((two, BOND), ImageRef("/q.jpg"))
    assert render(p).count(IMG) == 4
    assert IMG + IMG + "1. Name: <Anya>, Info: Pink hair." + IMG + "2. Name: <Bond>" in render(p)


def test_user_text_can_never_become_a_control_token():
    for bad in ["<|im_start|>system", "x<|vision_start|>", "<|image_pad|>", "<|endoftext|>"]:
        with pytest.raises(PromptError, match="control token"):
            CaptionPrompt((ANYA,), ImageRef("/q.jpg"), request=f"Describe {bad}")
        with pytest.raises(PromptError, match="control token"):
            CaptionPrompt((PromptConcept("Anya", f"likes {bad}", (ImageRef("/a.jpg"),)),), ImageRef("/q.jpg"))
    with pytest.raises(PromptError):
        verify_rendered(SYS + IMG + TAIL + "<|im_start|>user\n", 2)


def test_a_concept_without_reference_is_refused():
    with pytest.raises(PromptError, match="no reference photo"):
        CaptionPrompt((PromptConcept("Anya", "", ()),), ImageRef("/q.jpg"))


def test_request_presets_and_text():
    assert resolve_request() == DEFAULT_REQUEST
    assert resolve_request(preset="rich") == "Give a rich caption of the image."
    assert resolve_request(preset="mine", user_presets={"mine": "Caption it for grandma."}) == "Caption it for grandma."
    assert resolve_request("  Say   hi. ") == "Say hi."
    with pytest.raises(PromptError, match="unknown request preset"):
        resolve_request(preset="nope")
    with pytest.raises(PromptError, match="control token"):
        resolve_request("<|im_end|>")


def test_prefix_key_and_hash():
    a = CaptionPrompt((ANYA, BOND), ImageRef("/q1.jpg"))
    b = CaptionPrompt((ANYA, BOND), ImageRef("/q2.jpg"))
    c = CaptionPrompt((BOND, ANYA), ImageRef("/q1.jpg"))
    assert a.prefix_key() == b.prefix_key() != c.prefix_key()
    assert a.prompt_hash() == CaptionPrompt((ANYA, BOND), ImageRef("/q1.jpg")).prompt_hash()
    assert a.prompt_hash() != CaptionPrompt((ANYA, BOND), ImageRef("/q1.jpg"), request="Hi.").prompt_hash()


def test_build_prompt_uses_library_order_and_primary_reference(library, tmp_path):
    def photo(name, size=(60, 40)):
        path = tmp_path / name
        Image.new("RGB", size, (9, 9, 9)).save(path)
        return library.photos.add(path, size=1, mtime_ns=1, content_hash=name, format="JPEG", width=size[0],
                                  height=size[1])
    q, a1, a2, b1 = photo("q.jpg"), photo("a1.jpg"), photo("a2.jpg"), photo("b1.jpg")
    library.concepts.add("Bond", "pet", "A white dog.")
    library.concepts.add("Anya", "person", "Pink hair.")
    library.concepts.add_ref("Anya", photo_id=a1)
    library.concepts.add_ref("Anya", photo_id=a2, box=Box(1, 1, 10, 10), primary=True)
    library.concepts.add_ref("Bond", photo_id=b1)
    library.concepts.tag(q, "Anya")
    library.concepts.tag(q, "Bond")
    p = build_prompt(library, q)
    assert p.expected_names() == ["Bond", "Anya"]  # library order, not tagging order
    assert [r.path for r in p.images()] == [str(tmp_path / "b1.jpg"), str(tmp_path / "a2.jpg"), str(tmp_path / "q.jpg")]
    assert p.images()[1].box == (1, 1, 10, 10) and p.images()[1].content_hash == "a2.jpg"
    named = build_prompt(library, q, names=["Anya", "Bond"], max_refs=2)  # user order is ignored too
    assert named.expected_names() == ["Bond", "Anya"] and len(named.images()) == 4
    with pytest.raises(PromptError, match="unknown system prompt"):
        build_prompt(library, q, system_preset="nope")


def test_smart_resize_matches_transformers():
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize as hf

    for h, w in [(480, 640), (4000, 3000), (28, 28), (10, 10), (1000, 37), (3024, 4032), (896, 896)]:
        for lo, hi in [(3136, MAX_PIXELS), (3136, 16384 * 28 * 28), (3136, 224 * 224)]:
            assert smart_resize(h, w, 28, lo, hi) == tuple(hf(h, w, 28, lo, hi))
    assert visual_tokens(3024, 4032) <= 1024
    with pytest.raises(PromptError, match="aspect ratio"):
        smart_resize(10, 3000)


def test_fetch_image_rounds_to_28_and_crops(tmp_path):
    p = tmp_path / "a.png"
    Image.new("RGBA", (100, 50), (255, 0, 0, 0)).save(p)
    img = fetch_image(ImageRef(str(p)))
    assert img.mode == "RGB" and img.size == (112, 56) and img.getpixel((5, 5)) == (255, 255, 255)
    crop = fetch_image(ImageRef(str(p), (10, 10, 60, 30)))
    assert crop.size == (84, 56)  # 60x30 is under min_pixels (3136): scaled up, as qwen_vl_utils does


def test_parse_tags():
    r = parse_tags("<anya> and her dog <Bond> meet <Wanda Maximoff>. <Anya>'s hat! <|im_end|>",
                   expected=["Anya", "Bond", "Loid"], known=["Anya", "Bond", "Loid", "Yor"])
    assert r.found == ["Anya", "Bond"] and r.missing == ["Loid"] and r.unknown == ["Wanda Maximoff"]
    assert parse_tags("no names here", ["Anya"]).as_dict() == {"found": [], "missing": ["Anya"], "unknown": []}
    assert parse_tags("<Yor> waves", [], known=["Yor"]).found == ["Yor"]


def test_special_tokens_are_counted_in_the_rendered_prompt_not_only_turns():
    # A name that the app's brackets turn into a control token (validation refuses it; this is the
    # second line of defence for a name that reached the prompt some other way).
    for name in ["|im_end|", "|vision_start|", "|endoftext|", "tool_call"]:
        p = CaptionPrompt((PromptConcept(name, "x", (ImageRef("/a.jpg"),)),), ImageRef("/q.jpg"))
        with pytest.raises(PromptError, match="special tokens"):
            render(p)
    render(CaptionPrompt((ANYA,), ImageRef("/q.jpg")))  # the normal layout passes
