"""Small Persian word lists used by the half-space repairs of :mod:`inference.half_space`.

The verb stems are the present and past stems of common simple verbs, compiled by hand from
standard Persian conjugation tables and checked against the most frequent ``می``/``نمی`` +
space + verb forms in Persian news text (``می شود``, ``می کند``, ``می تواند``, ...). A stem is
listed only when every conjugated form it yields is unambiguously a verb after ``می``; the
list is deliberately short (a missed repair leaves text as it was, a wrong one merges words).

Example:
    >>> "کن" in PRESENT_STEMS and "کرد" in PAST_STEMS
    True
"""

from __future__ import annotations

# Present stems take the endings م ی د یم ید ند: کن -> می‌کنم … می‌کنند.
PRESENT_STEMS: frozenset[str] = frozenset(
    """
    کن شو توان ده رس گوی رو گیر آی خواه دان باش بر یاب گرد گذار زن خور مان بین افت ساز افزای
    نویس کش آور پذیر پرداز گذر شناس فرست خوان نشین ایست دار بخش پوش ریز کوش اندیش جوی پرس
    سپار کاه سوز چرخ شکن بند گشای نمای فرمای آموز فروش خر ترس جنگ رسان شمار دو آفرین تاب
    کوب خند خواب نگر گزین پسند طلب پیوند گریز انداز ورز لرز پای چین کشان ران
    """.split()
)

# Past stems take the endings م ی یم ید ند or none: کرد -> می‌کردم … می‌کرد.
PAST_STEMS: frozenset[str] = frozenset(
    """
    کرد شد گفت رفت داد بود آمد داشت خواست توانست دید گرفت رسید زد خورد کشید ماند دانست نوشت
    گذاشت آورد برد خواند شناخت ساخت یافت افتاد نشست ایستاد پرسید فرستاد گذشت پرداخت گشت گردید
    شنید بست ریخت پوشید کوشید ترسید فروخت خرید دوید نمود افزود بخشید آموخت اندیشید سوخت زیست
    جنگید خندید خوابید بارید چرخید رساند پذیرفت نگریست کاست انداخت باخت پیوست
    """.split()
)

# Forms used after می/نمی without a personal ending: می‌توان, نمی‌بایست.
BARE_FORMS: frozenset[str] = frozenset({"توان", "بایست", "بایستی", "ارزد"})

# Adjectives whose comparative is often written apart (بیش تر): joined with a ZWNJ before تر.
# تر alone is also the adjective "wet", so it is joined only after these words or before از.
COMPARATIVE_BASES: frozenset[str] = frozenset(
    """
    بیش کم بزرگ کوچک مهم سخت راحت آسان دشوار پایین بالا پیش گران ارزان سریع آرام قوی ضعیف
    نزدیک دور طولانی کوتاه بلند گسترده پیچیده جدی خطرناک متفاوت مناسب مطلوب موثر مؤثر فعال
    سنگین سبک گرم سرد جوان پیر زیاد بد خوب شدید عمیق وسیع دقیق روشن تاریک
    """.split()
)
