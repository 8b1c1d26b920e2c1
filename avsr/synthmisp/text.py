"""SynthMISP text: a homophone-free Mandarin vocabulary and a small sentence grammar.

The synthetic corpus must be recognisable *only* from audio and video, never from
a language model alone, and the character error rate must not have a floor caused
by homophones (two characters that sound identical can never be told apart by
audio, and lip video cannot help either).  Therefore:

* Every character of the vocabulary has exactly one toned pinyin syllable
  (``CHAR2SYL``), and every toned syllable is used by exactly one character
  (``SYL2CHAR``): the *homophone floor* (see :func:`homophone_floor`) is 0.
  Syllables are written as pypinyin ``Style.TONE3`` gives them, with the neutral
  tone written as ``5`` (``neutral_tone_with_five=True``) and ü as ``v``
  (e.g. ``lv4``).
* The syllable of a character is what pypinyin reads for it *inside the words of
  the word list* (pypinyin reads polyphones such as 了/的/得 in context).  The
  word list is checked at import time: a character read two ways, or two
  characters read the same way, raise ``ValueError``.  So the lists below were
  curated until the check passes (polyphones are used only in one reading,
  reduplicated kinship terms with neutral tones are avoided, ...).
* :func:`to_pinyin` is a pure table look-up in ``CHAR2SYL`` and thus
  deterministic and context free; on generated sentences it agrees with
  pypinyin's own in-context reading (checked by the tests).

The grammar (:class:`TextGenerator`) draws from about a dozen sentence templates
(subject / time / place / verb / object / numeral-measure-noun phrases,
questions, 把-sentences, existentials, ...), with word choice uniform inside each
part-of-speech slot and independent of meaning (so sentences are grammatical
but often absurd, e.g. 老王在机场煮十本小说).  A character bigram model reaches a
held-out perplexity of about 19 (1500 training / 300 test sentences): predictable
enough to help a decoder, far from enough to recognise without audio or video.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from typing import Iterable, Sequence

import numpy as np

__all__ = [
    "WORDS",
    "VOCAB",
    "CHAR2SYL",
    "SYL2CHAR",
    "MIN_LEN",
    "MAX_LEN",
    "TextGenerator",
    "to_pinyin",
    "pinyin_string",
    "bigram_perplexity",
    "homophone_floor",
    "TEMPLATE_CHARS",
    "restrict_words",
]

MIN_LEN = 6
MAX_LEN = 16

# ---------------------------------------------------------------------------
# Word list, grouped by part of speech (space separated; order is irrelevant).
# ---------------------------------------------------------------------------
_RAW_WORDS: dict[str, str] = {
    # personal pronouns and people (sentence subjects / indirect objects)
    "pron": "我 你 他 我们 你们 他们 大家",
    "person": " ".join((
        "老师 学生 医生 同学 父亲 母亲 司机 邻居 孩子",
        "农民 记者 厨师 队长 校长 画家 歌手",
    )),
    # surnames, used as 老X / 小X
    "surname": " ".join((
        "王 刘 陈 杨 黄 周 吴 孙 郭 罗 梁 谢 韩 冯 董 曹 邓 许 沈 蒋 丁 魏 薛",
        "潘 杜 钟 汪 姜 姚 谭 廖 邹 熊 陆 孔 崔 毛 邱 顾 侯 孟 雷 尹 乔 贺 赖 文",
    )),
    # given names, used after a surname (full names such as 王明)
    "given": " ".join((
        "明 华 丽 军 伟 静 强 磊 艳 涛 超 秀 霞 辉 玲 鹏 斌 浩 凯 婷",
        "龙 敏 梅 雪 帆 波 松 宁 娟 倩 欢",
    )),
    # time words
    "time": "今天 明天 昨天 早上 周末 每天 刚才 后来 春节 去年 明年 上周 夜里",
    # places
    "place": " ".join((
        "学校 公园 医院 家里 车站 饭馆 图书馆 公司 门口 楼下 海边 广场",
        "教室 厨房 花园 上海 农村 城里 银行 机场 操场 宿舍",
        "办公室 体育馆 博物馆 火车站 动物园",
    )),
    # numerals (一 is avoided: pypinyin writes its sandhi tones)
    "num": "两 三 四 五 六 七 八 九 十 几",
    # adjectives usable both as attribute (ADJ 的 N) and predicate (很 ADJ)
    "adj": " ".join((
        "新 旧 红 白 黑 绿 蓝 好看 可爱 甜 辣 贵 慢 高兴 暖和 奇怪 简单",
        "容易 特别 热情 安全 紧张 大 小 高 短 胖 瘦 冷 热 酸 苦 咸 软 硬",
        "忙 累 远 近 轻 矮 乱 方 深 浅 粗 细 窄 宽 笨 懒 丑 穷 老",
    )),
    # transitive verbs (take a noun object)
    "vt": " ".join((
        "买 卖 拿 送 找 看 借 带 放 擦 搬 换 吃 喝 准备 需要 打开 收到 研究",
        "选 扔 租 偷 洗 讨论 参观 打扫 拍 写 画 修 推 拉 煮 装 丢 包",
        "踢 摸 穿 挂 锁 烤 炒 接 追 捆 啃 泡 做 收",
    )),
    # intransitive activities (with optional 在 PLACE)
    "vi": "散步 跑步 唱歌 游泳 上课 开会 聊天 等车 排队 吃饭 看书 写字 打球 做饭 练琴 跳绳 钓鱼",
    # adverbs before the verb
    "adv": "经常 已经 马上 偶尔 突然 也 又 先 刚刚 常常 才",
    # degree adverbs before predicative adjectives
    "deg": "很 真 特别 太",
    # function words and particles used by the templates
    "func": "在 去 想 要 会 跟 给 把 这 那 的 了 吗 呢 吧 有 请 能 从 回 来 认为 应该 打算",
}

# measure word -> nouns it is used with
_MW_NOUNS: dict[str, str] = {
    "本": "书 杂志 词典 日记 小说",
    "张": "桌子 地图 照片 床 报纸 票 纸 画",
    "件": "衬衫 外套",
    "杯": "茶 咖啡 牛奶 果汁 水 热汤 可乐",
    "辆": "汽车 卡车 出租车 公共汽车",
    "条": "鱼 裤子 裙子 狗 船",
    "双": "鞋 袜子 手套",
    "把": "雨伞 刀 尺子",
    "碗": "米饭 面条 豆腐",
    "个": "苹果 包子 西瓜 橘子 杯子 盒子 箱子 灯泡 桃 梨 球 包",
    "顶": "帽子",
    "朵": "云",
    "封": "信",
    "棵": "树 白菜",
    "头": "牛 猪",
    "块": "手表 肥皂 饼干 糖 肉",
    "台": "电脑 冰箱 相机",
}


def _build_words() -> dict[str, list[str]]:
    words = {pos: s.split() for pos, s in _RAW_WORDS.items()}
    words["mw"] = list(_MW_NOUNS)
    words["noun"] = sorted({n for s in _MW_NOUNS.values() for n in s.split()})
    return words


WORDS: dict[str, list[str]] = _build_words()
_NOUN_MW: dict[str, str] = {n: mw for mw, s in _MW_NOUNS.items() for n in s.split()}


def _word_pinyin(word: str) -> list[str]:
    from pypinyin import Style, lazy_pinyin

    syl = lazy_pinyin(word, style=Style.TONE3, neutral_tone_with_five=True, errors="exception")
    if len(syl) != len(word):
        raise ValueError(f"pypinyin gave {syl} for {word!r}")
    return syl


def _all_words() -> list[str]:
    out = []
    for lst in WORDS.values():
        out.extend(lst)
    # words the templates build from parts
    out.extend("老" + s for s in WORDS["surname"])
    out.extend("小" + s for s in WORDS["surname"])
    out.extend(s + g for s in WORDS["surname"] for g in WORDS["given"])
    return sorted(set(out))


def _build_char_map() -> dict[str, str]:
    """Read every word with pypinyin and check the one-char-one-syllable property."""
    readings: dict[str, set[str]] = defaultdict(set)
    where: dict[tuple[str, str], str] = {}
    for w in _all_words():
        for ch, syl in zip(w, _word_pinyin(w)):
            readings[ch].add(syl)
            where.setdefault((ch, syl), w)
    problems = []
    for ch, syls in sorted(readings.items()):
        if len(syls) > 1:
            problems.append(f"{ch} read as " + ", ".join(f"{s} (in {where[(ch, s)]})" for s in sorted(syls)))
    char2syl = {ch: next(iter(s)) for ch, s in readings.items()}
    by_syl: dict[str, list[str]] = defaultdict(list)
    for ch, syl in char2syl.items():
        by_syl[syl].append(ch)
    for syl, chars in sorted(by_syl.items()):
        if len(chars) > 1:
            problems.append(f"{syl} shared by " + ", ".join(f"{c} (in {where[(c, syl)]})" for c in sorted(chars)))
    if problems:
        raise ValueError("SynthMISP vocabulary is not homophone free:\n  " + "\n  ".join(problems))
    return dict(sorted(char2syl.items()))


CHAR2SYL: dict[str, str] = _build_char_map()
SYL2CHAR: dict[str, str] = {s: c for c, s in CHAR2SYL.items()}
VOCAB: tuple[str, ...] = tuple(CHAR2SYL)
assert len(SYL2CHAR) == len(CHAR2SYL), "homophones in VOCAB"


#: Characters the sentence templates write themselves (not drawn from a slot); always in the inventory.
TEMPLATE_CHARS: frozenset[str] = frozenset("在跟去把放请了的吗呢吧想要打算应该认为从回来有给这那太能会老小")
#: Slots the grammar draws from, in the order the restriction visits them on ties.
_SLOTS = ("pron", "person", "surname", "given", "time", "place", "num", "adj", "vt", "vi", "adv", "deg", "noun")
_MIN_PER_SLOT = 2


def restrict_words(n_chars: int) -> tuple[dict[str, list[str]], tuple[str, ...]]:
    """Word lists whose characters (with :data:`TEMPLATE_CHARS`) number at most ``n_chars``.

    ``n_chars <= 0`` or at least the full inventory: the full lists.  Otherwise words are
    taken slot by slot, always from the slot with the smallest share of its list taken so
    far (ties in :data:`_SLOTS` order), each slot's words in list order, skipping a word
    whose new characters would exceed the budget; a noun brings its measure word.  The
    result is a pure function of ``n_chars``; it is a subset of the homophone-free
    vocabulary, so it is homophone free too.  Raises ``ValueError`` when ``n_chars`` is too
    small to give every slot two words.
    """
    if n_chars <= 0 or n_chars >= len(VOCAB):
        return {pos: list(v) for pos, v in WORDS.items()}, VOCAB
    full = {pos: list(WORDS[pos]) for pos in _SLOTS}
    chars = set(TEMPLATE_CHARS)
    taken: dict[str, list[str]] = {pos: [] for pos in _SLOTS}
    nxt = {pos: 0 for pos in _SLOTS}

    def needs(pos: str, w: str) -> set[str]:
        return set(w + (_NOUN_MW[w] if pos == "noun" else "")) - chars

    open_slots = list(_SLOTS)
    while open_slots:
        pos = min(open_slots, key=lambda p: (len(taken[p]) / len(full[p]), _SLOTS.index(p)))
        lst = full[pos]
        while nxt[pos] < len(lst) and len(chars | needs(pos, lst[nxt[pos]])) > n_chars:
            nxt[pos] += 1
        if nxt[pos] >= len(lst):
            open_slots.remove(pos)
            continue
        w = lst[nxt[pos]]
        nxt[pos] += 1
        chars |= needs(pos, w)
        taken[pos].append(w)
    short = [p for p in _SLOTS if len(taken[p]) < _MIN_PER_SLOT]
    if short:
        raise ValueError(f"n_chars={n_chars} is too small: slots {short} get fewer than {_MIN_PER_SLOT} words")
    out = {pos: v for pos, v in taken.items()}
    out["func"] = list(WORDS["func"])   # not drawn by the grammar
    out["mw"] = sorted({_NOUN_MW[n] for n in taken["noun"]})
    return out, tuple(c for c in VOCAB if c in chars)   # chars: the template's and every taken word's


def homophone_floor(vocab: Iterable[str] = VOCAB, char2syl: dict[str, str] | None = None) -> float:
    """Fraction of characters of ``vocab`` that share their toned syllable with another one.

    This is the character error rate an oracle that knows the exact toned syllables
    (but not the characters) would still make if it picked, for each syllable, the
    most frequent character with a uniform prior: ``sum_s (n_s - 1) / N``.  Readings
    come from ``char2syl`` (default: ``CHAR2SYL`` for known characters, pypinyin for
    others).  0.0 for the SynthMISP vocabulary.
    """
    chars = sorted(set(vocab))
    if not chars:
        return 0.0
    table = CHAR2SYL if char2syl is None else char2syl
    counts: Counter[str] = Counter()
    for ch in chars:
        syl = table.get(ch)
        if syl is None:
            syl = _word_pinyin(ch)[0]
        counts[syl] += 1
    return sum(n - 1 for n in counts.values()) / len(chars)


def to_pinyin(text: str) -> list[str]:
    """Toned syllables (``Style.TONE3``, neutral tone ``5``, ü as ``v``) of ``text``.

    Whitespace and common punctuation are skipped; any other character outside
    ``VOCAB`` raises ``KeyError``.
    """
    out = []
    for ch in text:
        if ch.isspace() or ch in "，。！？、；：,.!?;:":
            continue
        try:
            out.append(CHAR2SYL[ch])
        except KeyError:
            raise KeyError(f"character {ch!r} of {text!r} is not in the SynthMISP vocabulary") from None
    return out


def pinyin_string(text: str) -> str:
    """``to_pinyin`` joined by spaces, e.g. ``"wo3 men5 qu4 gong1 yuan2"``."""
    return " ".join(to_pinyin(text))


# ---------------------------------------------------------------------------
# Grammar
# ---------------------------------------------------------------------------
class TextGenerator:
    """Random Mandarin sentences of ``MIN_LEN``..``MAX_LEN`` characters over ``VOCAB``
    (or over the at most ``n_chars`` of it that :func:`restrict_words` picks).

    ``sentence(rng)`` is a pure function of the state of ``rng`` (a
    ``numpy.random.Generator``); when ``rng`` is None the generator's own rng,
    seeded by ``seed``, is used.
    """

    # (template name, weight); the builders are the _t_<name> methods
    TEMPLATES: tuple[tuple[str, float], ...] = (
        ("subj_time_vt_obj", 1.0),
        ("time_subj_at_place_vi", 1.0),
        ("subj_at_place_vt_count", 1.0),
        ("subj_vt_le_count", 1.0),
        ("dem_noun_deg_adj", 0.8),
        ("subj_want_go_place_vt", 1.0),
        ("subj_with_subj_time_go_vi", 0.8),
        ("subj_time_vt_obj_question", 0.8),
        ("please_ba_noun_put_place", 0.6),
        ("subj_adv_at_place_vi", 1.0),
        ("place_have_count", 0.7),
        ("subj_give_subj_vt_count", 0.7),
        ("subj_think_noun_deg_adj", 0.6),
        ("subj_from_place_come_back", 0.5),
        ("subj_modal_vt_obj_q", 0.6),
    )

    def __init__(self, seed: int | None = None, n_chars: int = 0):
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        #: ``n_chars > 0``: the grammar draws only from :func:`restrict_words` (at most that many characters)
        self.words, self.vocab = restrict_words(n_chars)
        names = [n for n, _ in self.TEMPLATES]
        w = np.array([x for _, x in self.TEMPLATES], dtype=np.float64)
        self._names = names
        self._p = w / w.sum()

    # -- slot helpers -------------------------------------------------------
    def _pick(self, rng: np.random.Generator, pos: str) -> str:
        lst = self.words[pos]
        return lst[int(rng.integers(len(lst)))]

    def _subj(self, rng) -> str:
        r = rng.random()
        if r < 0.25:
            return self._pick(rng, "pron")
        if r < 0.5:
            return self._pick(rng, "person")
        if r < 0.75:
            return self._pick(rng, "surname") + self._pick(rng, "given")
        return ("老" if rng.random() < 0.5 else "小") + self._pick(rng, "surname")

    def _count(self, rng, adj_p: float = 0.35) -> str:
        noun = self._pick(rng, "noun")
        np_ = noun
        if rng.random() < adj_p:
            np_ = self._pick(rng, "adj") + "的" + noun
        return self._pick(rng, "num") + _NOUN_MW[noun] + np_

    def _obj(self, rng) -> str:
        r = rng.random()
        if r < 0.45:
            return self._pick(rng, "noun")
        if r < 0.65:
            return self._pick(rng, "adj") + "的" + self._pick(rng, "noun")
        return self._count(rng, adj_p=0.2)

    def _dem_np(self, rng) -> str:
        noun = self._pick(rng, "noun")
        return ("这" if rng.random() < 0.5 else "那") + _NOUN_MW[noun] + noun

    def _subj_time(self, rng) -> str:
        """Subject and time word in either order (我明天 / 明天我)."""
        subj, time = self._subj(rng), self._pick(rng, "time")
        return subj + time if rng.random() < 0.6 else time + subj

    def _opt(self, rng, p: float, pos: str) -> str:
        return self._pick(rng, pos) if rng.random() < p else ""

    # -- templates -------------------------------------------------------------
    def _t_subj_time_vt_obj(self, rng):
        return self._subj_time(rng) + self._opt(rng, 0.3, "adv") + self._pick(rng, "vt") + self._obj(rng)

    def _t_time_subj_at_place_vi(self, rng):
        return self._pick(rng, "time") + self._subj(rng) + "在" + self._pick(rng, "place") + self._pick(rng, "vi")

    def _t_subj_at_place_vt_count(self, rng):
        return self._subj(rng) + "在" + self._pick(rng, "place") + self._pick(rng, "vt") + self._count(rng)

    def _t_subj_vt_le_count(self, rng):
        return self._subj(rng) + self._opt(rng, 0.4, "time") + self._pick(rng, "vt") + "了" + self._count(rng)

    def _t_dem_noun_deg_adj(self, rng):
        tail = "了" if rng.random() < 0.25 else ""
        deg = "太" if tail else self._pick(rng, "deg")
        return self._dem_np(rng) + deg + self._pick(rng, "adj") + tail

    def _t_subj_want_go_place_vt(self, rng):
        modal = ("想", "要", "打算", "应该")[int(rng.integers(4))]
        return self._subj(rng) + self._opt(rng, 0.4, "time") + modal + "去" + self._pick(rng, "place") + self._pick(rng, "vt") + self._obj(rng)

    def _t_subj_with_subj_time_go_vi(self, rng):
        return self._subj(rng) + "跟" + self._subj(rng) + self._pick(rng, "time") + "去" + self._pick(rng, "place") + self._pick(rng, "vi")

    def _t_subj_time_vt_obj_question(self, rng):
        q = ("吗", "呢", "吧")[int(rng.integers(3))]
        return self._subj_time(rng) + ("要" if rng.random() < 0.5 else "会") + self._pick(rng, "vt") + self._obj(rng) + q

    def _t_please_ba_noun_put_place(self, rng):
        subj = self._subj(rng)
        head = "请" + subj if rng.random() < 0.5 and not subj.startswith("我") else subj
        return head + "把" + self._dem_np(rng) + "放在" + self._pick(rng, "place")

    def _t_subj_adv_at_place_vi(self, rng):
        return self._subj(rng) + self._pick(rng, "adv") + "在" + self._pick(rng, "place") + self._pick(rng, "vi")

    def _t_place_have_count(self, rng):
        return self._opt(rng, 0.4, "time") + self._pick(rng, "place") + "有" + self._count(rng)

    def _t_subj_give_subj_vt_count(self, rng):
        return self._subj(rng) + "给" + self._subj(rng) + self._pick(rng, "vt") + "了" + self._count(rng, adj_p=0.2)

    def _t_subj_think_noun_deg_adj(self, rng):
        return self._subj(rng) + "认为" + self._dem_np(rng) + self._pick(rng, "deg") + self._pick(rng, "adj")

    def _t_subj_from_place_come_back(self, rng):
        return self._subj(rng) + self._opt(rng, 0.5, "time") + "从" + self._pick(rng, "place") + ("回来" if rng.random() < 0.5 else "来") + self._opt(rng, 0.3, "vi")

    def _t_subj_modal_vt_obj_q(self, rng):
        modal = ("能", "会", "应该")[int(rng.integers(3))]
        q = ("吗", "吧", "")[int(rng.integers(3))]
        return self._subj(rng) + modal + self._pick(rng, "vt") + self._obj(rng) + q

    # -- public -----------------------------------------------------------------
    def sentence(self, rng: np.random.Generator | None = None) -> str:
        """One sentence of MIN_LEN..MAX_LEN characters (rejection sampling over templates)."""
        rng = self.rng if rng is None else rng
        while True:
            name = self._names[int(rng.choice(len(self._names), p=self._p))]
            s = getattr(self, "_t_" + name)(rng)
            if MIN_LEN <= len(s) <= MAX_LEN:
                return s

    def sentences(self, n: int, rng: np.random.Generator | None = None) -> list[str]:
        rng = self.rng if rng is None else rng
        return [self.sentence(rng) for _ in range(n)]


# ---------------------------------------------------------------------------
# Character bigram perplexity
# ---------------------------------------------------------------------------
def bigram_perplexity(
    train_sents: Sequence[str],
    test_sents: Sequence[str],
    discount: float = 0.75,
    uniform_weight: float = 0.01,
) -> float:
    """Held-out perplexity of an interpolated Kneser-Ney character bigram model.

    Each sentence is ``<s> c1 ... cn </s>``; the n characters and ``</s>`` are
    predicted.  With ``c(v,w)`` the training bigram counts and ``D = discount``::

        P(w | v) = max(c(v,w) - D, 0) / c(v)  +  D * N1+(v .) / c(v) * Pcont(w)
        Pcont(w) = (1 - u) * N1+(. w) / N1+(. .)  +  u / |V|

    where ``N1+(v .)`` is the number of distinct successors of ``v``, ``N1+(. w)``
    the number of distinct predecessors of ``w``, and ``V`` the training
    characters plus ``</s>`` plus one unknown-character class; ``u =
    uniform_weight`` keeps characters unseen in training finite.  A history
    never seen in training backs off to ``Pcont``.
    """
    bos, eos, unk = "<s>", "</s>", "<unk>"
    big: Counter[tuple[str, str]] = Counter()
    for s in train_sents:
        toks = [bos, *s, eos]
        big.update(zip(toks[:-1], toks[1:]))
    hist: Counter[str] = Counter()
    succ: Counter[str] = Counter()
    pred: Counter[str] = Counter()
    for (v, w), c in big.items():
        hist[v] += c
        succ[v] += 1
        pred[w] += 1
    n_types = len(big)
    vocab = {w for _, w in big} | {unk}
    vsize = len(vocab)

    def pcont(w: str) -> float:
        return (1.0 - uniform_weight) * (pred.get(w, 0) / n_types if n_types else 0.0) + uniform_weight / vsize

    logp = 0.0
    n = 0
    for s in test_sents:
        toks = [bos, *s, eos]
        for v, w in zip(toks[:-1], toks[1:]):
            if w not in vocab:
                w = unk
            cv = hist.get(v, 0)
            if cv:
                p = max(big.get((v, w), 0) - discount, 0.0) / cv + discount * succ[v] / cv * pcont(w)
            else:
                p = pcont(w)
            logp += math.log(p)
            n += 1
    if n == 0:
        raise ValueError("no test tokens")
    return math.exp(-logp / n)
