"""Tests for medgraph.tools.calculators.

Expected values are computed here, independently of the module, from the published formula or
scoring table (transcribed in each test with its source), and checked against worked examples where
one is published. Every calculator is exercised through the LangChain interface (``tool.invoke``),
with valid input and with invalid input that must come back as a message, not an exception.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import pytest
from langchain_core.messages import ToolMessage
from langchain_core.tools import BaseTool

from medgraph.tools.calculators import (
    CALCULATOR_TOOLS,
    bmi,
    bsa,
    cha2ds2_vasc,
    cockcroft_gault,
    convert_units,
    curb_65,
    egfr_ckd_epi_2021,
    has_bled,
    kdigo_gfr_category,
    qtc,
    wells_pe,
    who_bmi_category,
)


def _ok(tool: BaseTool, args: dict[str, Any]) -> dict[str, Any]:
    """Invoke a tool with valid input and return its result dict."""
    result = tool.invoke(args)
    assert isinstance(result, dict), f"{tool.name} returned an error for {args}: {result}"
    return result


def _error(tool: BaseTool, args: dict[str, Any]) -> str:
    """Invoke a tool with invalid input; it must answer with a message, not raise."""
    result = tool.invoke(args)
    assert isinstance(result, str), f"{tool.name} accepted invalid input {args}: {result}"
    return result


# --------------------------------------------------------------------------------------------------
# BMI — Keys et al., J Chronic Dis 1972 (index); WHO TRS 894, 2000 (adult categories)
# --------------------------------------------------------------------------------------------------


def test_bmi_worked_example() -> None:
    # BMI = kg / m²: 70 kg, 1.75 m -> 70 / 3.0625 = 22.857 kg/m², "normal weight" (18.5-24.99).
    result = _ok(bmi, {"weight_kg": 70, "height_cm": 175})
    assert result["value"] == pytest.approx(70 / 1.75**2, abs=0.005)
    assert result["value"] == pytest.approx(22.86, abs=0.005)
    assert result["unit"] == "kg/m²"
    assert result["category"] == "normal weight"
    assert "WHO" in result["source"]


# WHO 2000 cut-offs; at height 200 cm (4 m²) the weight in kg is exactly 4 × BMI.
@pytest.mark.parametrize(
    ("bmi_value", "expected_category"),
    [
        (18.49, "underweight"),
        (18.5, "normal weight"),
        (24.99, "normal weight"),
        (25.0, "overweight (pre-obese)"),
        (29.99, "overweight (pre-obese)"),
        (30.0, "obese class I"),
        (35.0, "obese class II"),
        (39.99, "obese class II"),
        (40.0, "obese class III"),
    ],
)
def test_bmi_who_category_boundaries(bmi_value: float, expected_category: str) -> None:
    result = _ok(bmi, {"weight_kg": 4 * bmi_value, "height_cm": 200})
    assert result["value"] == pytest.approx(bmi_value, abs=1e-9)
    assert result["category"] == expected_category
    assert who_bmi_category(bmi_value) == expected_category


def test_bmi_height_in_metres_is_reported_with_range_and_hint() -> None:
    message = _error(bmi, {"weight_kg": 70, "height_cm": 1.75})
    assert "height_cm" in message and "1.75" in message
    assert "30" in message and "280" in message and "cm" in message
    assert "m × 100" in message


def test_bmi_argument_in_wrong_unit_name_is_reported() -> None:
    message = _error(bmi, {"weight_lb": 154, "height_cm": 175})
    assert "weight_lb" in message and "not an argument" in message
    assert "weight_kg is required" in message
    assert "weight_kg: a number ≥ 0.5 and ≤ 650 kg" in message


# --------------------------------------------------------------------------------------------------
# BSA — Mosteller RD, N Engl J Med 1987;317:1098; Du Bois & Du Bois, Arch Intern Med 1916;17:863
# --------------------------------------------------------------------------------------------------


def test_bsa_mosteller_worked_example() -> None:
    # Mosteller: sqrt(cm × kg / 3600). 170 cm, 70 kg -> sqrt(11900 / 3600) = 1.818 m², the value
    # quoted in published worked examples for this adult (e.g. medicalequations.com BSA page).
    result = _ok(bsa, {"weight_kg": 70, "height_cm": 170})
    assert result["value"] == pytest.approx(math.sqrt(170 * 70 / 3600), abs=5e-4)
    assert result["value"] == pytest.approx(1.818, abs=5e-4)
    assert result["unit"] == "m²"
    assert result["method"] == "mosteller"
    assert "Mosteller" in result["source"] and "1987" in result["source"]


def test_bsa_dubois_worked_example() -> None:
    # DuBois: 0.007184 × W^0.425 × H^0.725; 70 kg, 170 cm -> 1.81 m².
    result = _ok(bsa, {"weight_kg": 70, "height_cm": 170, "method": "DuBois"})
    assert result["value"] == pytest.approx(0.007184 * 70**0.425 * 170**0.725, abs=5e-4)
    assert result["value"] == pytest.approx(1.81, abs=0.005)
    assert result["method"] == "dubois"
    assert "1916" in result["source"]


def test_bsa_rejects_unknown_method_with_choices() -> None:
    message = _error(bsa, {"weight_kg": 70, "height_cm": 170, "method": "haycock"})
    assert "method" in message and "haycock" in message
    assert "'mosteller'" in message and "'dubois'" in message


# --------------------------------------------------------------------------------------------------
# eGFR — CKD-EPI 2021 (Inker LA et al., N Engl J Med 2021;385:1737-49), equation as printed on the
# National Kidney Foundation page: 142 × min(Scr/κ,1)^α × max(Scr/κ,1)^-1.200 × 0.9938^age
# × 1.012 [female]; κ 0.7 F / 0.9 M; α -0.241 F / -0.302 M. KDIGO 2012 G categories.
# --------------------------------------------------------------------------------------------------


def _ckd_epi_2021_reference(scr_mg_dl: float, age: float, female: bool) -> float:
    kappa, alpha = (0.7, -0.241) if female else (0.9, -0.302)
    ratio = scr_mg_dl / kappa
    sex_factor = 1.012 if female else 1.0
    return 142 * min(ratio, 1) ** alpha * max(ratio, 1) ** -1.200 * 0.9938**age * sex_factor


def test_egfr_at_kappa_reduces_to_age_term() -> None:
    # With Scr = κ both spline terms are 1: eGFR = 142 × 0.9938^age. Male, 50 y, 0.9 mg/dL:
    # 142 × 0.9938^50 = 142 × 0.73275 = 104.05 (worked by hand).
    result = _ok(egfr_ckd_epi_2021, {"creatinine_mg_dl": 0.9, "age_years": 50, "sex": "male"})
    assert result["value"] == pytest.approx(142 * 0.9938**50, abs=0.05)
    assert result["value"] == pytest.approx(104.0, abs=0.1)
    assert result["unit"] == "mL/min/1.73 m²"
    assert result["category"] == "G1"


@pytest.mark.parametrize(
    ("scr", "age", "sex"),
    [
        (1.0, 50, "female"),  # above κ: exponent -1.200 branch
        (0.5, 60, "female"),  # below κ: exponent α branch
        (1.4, 58, "male"),
        (0.7, 30, "male"),
        (3.5, 72, "female"),
        (6.0, 45, "male"),
    ],
)
def test_egfr_matches_published_equation(scr: float, age: float, sex: str) -> None:
    expected = _ckd_epi_2021_reference(scr, age, female=sex == "female")
    result = _ok(egfr_ckd_epi_2021, {"creatinine_mg_dl": scr, "age_years": age, "sex": sex})
    assert result["value"] == pytest.approx(expected, abs=0.05)
    assert result["category"] == kdigo_gfr_category(result["value"])[0]


def test_egfr_accepts_common_sex_spellings() -> None:
    spelled = _ok(egfr_ckd_epi_2021, {"creatinine_mg_dl": 1.0, "age_years": 50, "sex": "F"})
    full = _ok(egfr_ckd_epi_2021, {"creatinine_mg_dl": 1.0, "age_years": 50, "sex": "female"})
    assert spelled["value"] == full["value"]
    # 142 × (1.0/0.7)^-1.2 × 0.9938^50 × 1.012 = 68.6, KDIGO G2.
    assert full["value"] == pytest.approx(68.6, abs=0.05)
    assert full["category"] == "G2"


# KDIGO 2012: G1 ≥90, G2 60-89, G3a 45-59, G3b 30-44, G4 15-29, G5 <15.
@pytest.mark.parametrize(
    ("egfr", "category"),
    [
        (120.0, "G1"),
        (90.0, "G1"),
        (89.9, "G2"),
        (60.0, "G2"),
        (59.9, "G3a"),
        (45.0, "G3a"),
        (44.9, "G3b"),
        (30.0, "G3b"),
        (29.9, "G4"),
        (15.0, "G4"),
        (14.9, "G5"),
        (3.0, "G5"),
    ],
)
def test_kdigo_category_boundaries(egfr: float, category: str) -> None:
    assert kdigo_gfr_category(egfr)[0] == category


def test_egfr_creatinine_in_umol_per_litre_is_reported() -> None:
    message = _error(egfr_ckd_epi_2021, {"creatinine_mg_dl": 88, "age_years": 50, "sex": "male"})
    assert "creatinine_mg_dl" in message and "88" in message
    assert "0.1" in message and "25" in message and "mg/dL" in message
    assert "88.4" in message  # how to convert µmol/L


def test_egfr_rejects_children_and_unknown_sex() -> None:
    message = _error(egfr_ckd_epi_2021, {"creatinine_mg_dl": 0.6, "age_years": 12, "sex": "x"})
    assert "age_years" in message and "12" in message and "18" in message
    assert "sex" in message and "'female'" in message and "'male'" in message


# --------------------------------------------------------------------------------------------------
# Cockcroft-Gault — Cockcroft DW, Gault MH, Nephron 1976;16:31-41:
# CrCl = (140 - age) × weight / (72 × Scr) × 0.85 [female]
# --------------------------------------------------------------------------------------------------


def test_cockcroft_gault_textbook_examples() -> None:
    # (140 - 40) × 72 / (72 × 1.0) = 100 mL/min; a woman with the same values: × 0.85 = 85.
    male = _ok(
        cockcroft_gault,
        {"age_years": 40, "weight_kg": 72, "creatinine_mg_dl": 1.0, "sex": "male"},
    )
    female = _ok(
        cockcroft_gault,
        {"age_years": 40, "weight_kg": 72, "creatinine_mg_dl": 1.0, "sex": "female"},
    )
    assert male["value"] == pytest.approx(100.0)
    assert female["value"] == pytest.approx(85.0)
    assert male["unit"] == "mL/min"


def test_cockcroft_gault_uses_actual_weight() -> None:
    args = {"age_years": 75, "weight_kg": 104.5, "creatinine_mg_dl": 1.3, "sex": "female"}
    expected = (140 - 75) * 104.5 / (72 * 1.3) * 0.85
    assert _ok(cockcroft_gault, args)["value"] == pytest.approx(expected, abs=0.05)


def test_cockcroft_gault_invalid_weight_is_reported() -> None:
    message = _error(
        cockcroft_gault,
        {"age_years": 60, "weight_kg": 0, "creatinine_mg_dl": 1.0, "sex": "male"},
    )
    assert "weight_kg=0" in message and "20" in message and "400" in message and "kg" in message


# --------------------------------------------------------------------------------------------------
# CHA2DS2-VASc — Lip GYH et al., Chest 2010;137:263-72. Scoring table:
# C 1, H 1, A2 (≥75) 2, D 1, S2 2, V 1, A (65-74) 1, Sc (female) 1.
# ESC 2020 (Hindricks G et al., Eur Heart J 2021;42:373-498): low 0 M / 1 F, intermediate 1 M /
# 2 F, high ≥2 M / ≥3 F.
# --------------------------------------------------------------------------------------------------

CHA2DS2_VASC_TABLE = {
    "congestive_heart_failure": 1,
    "hypertension": 1,
    "diabetes": 1,
    "stroke_tia_thromboembolism": 2,
    "vascular_disease": 1,
}


def _cha2ds2_vasc_expected(age: float, sex: str, **items: bool) -> int:
    age_points = 2 if age >= 75 else 1 if age >= 65 else 0
    sex_points = 1 if sex == "female" else 0
    return (
        age_points + sex_points + sum(CHA2DS2_VASC_TABLE[name] for name, on in items.items() if on)
    )


@pytest.mark.parametrize(
    ("age", "sex", "items", "category"),
    [
        (50, "male", {}, "low"),
        (50, "female", {}, "low"),  # female sex alone
        (50, "male", {"hypertension": True}, "intermediate"),
        (50, "female", {"hypertension": True}, "intermediate"),
        (64, "male", {}, "low"),
        (65, "male", {}, "intermediate"),
        (74, "male", {}, "intermediate"),
        (75, "male", {}, "high"),
        (60, "female", {"stroke_tia_thromboembolism": True}, "high"),
        (70, "female", {"diabetes": True, "vascular_disease": True}, "high"),
        (
            80,
            "female",
            {name: True for name in CHA2DS2_VASC_TABLE},
            "high",
        ),
    ],
)
def test_cha2ds2_vasc_from_table(
    age: float, sex: str, items: dict[str, bool], category: str
) -> None:
    result = _ok(cha2ds2_vasc, {"age_years": age, "sex": sex, **items})
    assert result["value"] == _cha2ds2_vasc_expected(age, sex, **items)
    assert result["category"] == category
    assert sum(result["points"].values()) == result["value"]


def test_cha2ds2_vasc_maximum_is_nine() -> None:
    result = _ok(
        cha2ds2_vasc,
        {"age_years": 80, "sex": "female", **{name: True for name in CHA2DS2_VASC_TABLE}},
    )
    assert result["value"] == 9


def test_cha2ds2_vasc_missing_sex_is_reported() -> None:
    message = _error(cha2ds2_vasc, {"age_years": 70, "hypertension": True})
    assert "sex is required" in message


# --------------------------------------------------------------------------------------------------
# HAS-BLED — Pisters R et al., Chest 2010;138:1093-100. One point per item (elderly: age > 65);
# ≥3 = high bleeding risk.
# --------------------------------------------------------------------------------------------------

HAS_BLED_ITEMS = [
    "uncontrolled_hypertension",
    "abnormal_renal_function",
    "abnormal_liver_function",
    "prior_stroke",
    "bleeding_history_or_predisposition",
    "labile_inr",
    "antiplatelet_or_nsaid_use",
    "alcohol_excess",
]


@pytest.mark.parametrize(
    ("age", "items", "category"),
    [
        (50, [], "low to moderate"),
        (65, ["labile_inr"], "low to moderate"),  # age 65 is not > 65
        (66, ["labile_inr"], "low to moderate"),  # 2 points
        (66, ["labile_inr", "alcohol_excess"], "high"),  # 3 points
        (50, ["uncontrolled_hypertension", "abnormal_renal_function", "prior_stroke"], "high"),
        (80, HAS_BLED_ITEMS, "high"),
    ],
)
def test_has_bled_from_table(age: float, items: list[str], category: str) -> None:
    expected = len(items) + (1 if age > 65 else 0)
    result = _ok(has_bled, {"age_years": age, **{name: True for name in items}})
    assert result["value"] == expected
    assert result["category"] == category


def test_has_bled_maximum_is_nine() -> None:
    result = _ok(has_bled, {"age_years": 80, **{name: True for name in HAS_BLED_ITEMS}})
    assert result["value"] == 9


def test_has_bled_non_boolean_item_is_reported() -> None:
    message = _error(has_bled, {"age_years": 70, "labile_inr": "sometimes"})
    assert "labile_inr" in message and "sometimes" in message and "true or false" in message


# --------------------------------------------------------------------------------------------------
# CURB-65 — Lim WS et al., Thorax 2003;58:377-82: one point each for confusion, urea >7 mmol/L,
# respiratory rate ≥30/min, systolic BP <90 or diastolic ≤60 mmHg, age ≥65.
# 0-1 low, 2 moderate, 3-5 high.
# --------------------------------------------------------------------------------------------------

_CURB_BASE: dict[str, Any] = {
    "confusion": False,
    "urea_mmol_l": 5.0,
    "respiratory_rate_per_min": 18,
    "systolic_bp_mmhg": 120,
    "diastolic_bp_mmhg": 75,
    "age_years": 40,
}


@pytest.mark.parametrize(
    ("changes", "points"),
    [
        ({}, 0),
        ({"urea_mmol_l": 7.0}, 0),  # "> 7" is strict
        ({"urea_mmol_l": 7.1}, 1),
        ({"respiratory_rate_per_min": 29}, 0),
        ({"respiratory_rate_per_min": 30}, 1),
        ({"systolic_bp_mmhg": 90, "diastolic_bp_mmhg": 61}, 0),
        ({"systolic_bp_mmhg": 89}, 1),
        ({"diastolic_bp_mmhg": 60}, 1),
        ({"systolic_bp_mmhg": 85, "diastolic_bp_mmhg": 55}, 1),  # one criterion, one point
        ({"age_years": 64}, 0),
        ({"age_years": 65}, 1),
        ({"confusion": True}, 1),
    ],
)
def test_curb_65_item_thresholds(changes: dict[str, Any], points: int) -> None:
    result = _ok(curb_65, {**_CURB_BASE, **changes})
    assert result["value"] == points


@pytest.mark.parametrize(
    ("score", "category"),
    [(0, "low"), (1, "low"), (2, "moderate"), (3, "high"), (4, "high"), (5, "high")],
)
def test_curb_65_categories(score: int, category: str) -> None:
    # Switch on the first `score` criteria, each worth one point in the published table.
    criteria: list[dict[str, Any]] = [
        {"confusion": True},
        {"urea_mmol_l": 9.0},
        {"respiratory_rate_per_min": 32},
        {"systolic_bp_mmhg": 85},
        {"age_years": 78},
    ]
    args = dict(_CURB_BASE)
    for criterion in criteria[:score]:
        args.update(criterion)
    result = _ok(curb_65, args)
    assert result["value"] == score
    assert result["category"] == category


def test_curb_65_bun_is_converted_to_urea() -> None:
    # urea mmol/L = BUN mg/dL × 10 / 28.014 (two nitrogen atoms per urea): 7 mmol/L ≈ 19.6 mg/dL.
    base = {key: value for key, value in _CURB_BASE.items() if key != "urea_mmol_l"}
    high = _ok(curb_65, {**base, "bun_mg_dl": 20})
    low = _ok(curb_65, {**base, "bun_mg_dl": 19})
    assert high["value"] == 1 and high["urea_mmol_l_used"] == pytest.approx(200 / 28.014, abs=0.01)
    assert low["value"] == 0


def test_curb_65_requires_exactly_one_urea_measure() -> None:
    both = _error(curb_65, {**_CURB_BASE, "bun_mg_dl": 20})
    assert "exactly one of urea_mmol_l" in both
    neither = {key: value for key, value in _CURB_BASE.items() if key != "urea_mmol_l"}
    assert "exactly one of urea_mmol_l" in _error(curb_65, neither)


def test_curb_65_rejects_swapped_blood_pressure() -> None:
    message = _error(curb_65, {**_CURB_BASE, "systolic_bp_mmhg": 70, "diastolic_bp_mmhg": 110})
    assert "diastolic_bp_mmhg=110" in message and "systolic_bp_mmhg=70" in message


# --------------------------------------------------------------------------------------------------
# Wells PE — Wells PS et al., Thromb Haemost 2000;83:416-20. Table: DVT signs 3, PE most likely 3,
# HR >100 1.5, immobilisation/surgery 1.5, previous DVT/PE 1.5, haemoptysis 1, malignancy 1.
# Three-tier <2 low, 2-6 moderate, >6 high; two-tier >4 PE likely.
# --------------------------------------------------------------------------------------------------

WELLS_TABLE = {
    "clinical_signs_of_dvt": 3.0,
    "pe_most_likely_diagnosis": 3.0,
    "immobilisation_or_recent_surgery": 1.5,
    "previous_dvt_or_pe": 1.5,
    "haemoptysis": 1.0,
    "active_malignancy": 1.0,
}


@pytest.mark.parametrize(
    ("heart_rate", "items", "category", "two_tier"),
    [
        (80, [], "low", "PE unlikely"),
        (100, [], "low", "PE unlikely"),  # HR must exceed 100
        (101, [], "low", "PE unlikely"),  # 1.5
        (80, ["haemoptysis", "active_malignancy"], "moderate", "PE unlikely"),  # 2
        (80, ["clinical_signs_of_dvt", "haemoptysis"], "moderate", "PE unlikely"),  # 4
        (110, ["clinical_signs_of_dvt"], "moderate", "PE likely"),  # 4.5
        (80, ["clinical_signs_of_dvt", "pe_most_likely_diagnosis"], "moderate", "PE likely"),  # 6
        (
            80,
            ["clinical_signs_of_dvt", "pe_most_likely_diagnosis", "haemoptysis"],
            "high",
            "PE likely",
        ),  # 7
        (120, list(WELLS_TABLE), "high", "PE likely"),  # 12.5
    ],
)
def test_wells_pe_from_table(
    heart_rate: float, items: list[str], category: str, two_tier: str
) -> None:
    expected = sum(WELLS_TABLE[name] for name in items) + (1.5 if heart_rate > 100 else 0.0)
    result = _ok(wells_pe, {"heart_rate_bpm": heart_rate, **{name: True for name in items}})
    assert result["value"] == pytest.approx(expected)
    assert result["category"] == category
    assert result["two_tier"] == two_tier


def test_wells_pe_heart_rate_text_is_reported() -> None:
    message = _error(wells_pe, {"heart_rate_bpm": "fast"})
    assert "heart_rate_bpm='fast'" in message and "20" in message and "300" in message
    assert "bpm" in message


# --------------------------------------------------------------------------------------------------
# QTc — Bazett HC, Heart 1920;7:353-70 (QT/RR^1/2); Fridericia LS, Acta Med Scand 1920;53:469-86
# (QT/RR^1/3); RR in seconds. Thresholds: Rautaharju PM et al., Circulation 2009;119:e241-50
# (prolonged ≥450 ms men / ≥460 ms women, short ≤390 ms); markedly prolonged >500 ms
# (Drew BJ et al., Circulation 2010;121:1047-60).
# --------------------------------------------------------------------------------------------------


def test_qtc_bazett_and_fridericia_worked_example() -> None:
    # QT 400 ms at 75 bpm: RR = 60/75 = 0.8 s. Bazett 400/√0.8 = 447.2 ms;
    # Fridericia 400/0.8^(1/3) = 430.9 ms.
    bazett = _ok(qtc, {"qt_ms": 400, "heart_rate_bpm": 75, "method": "bazett"})
    fridericia = _ok(qtc, {"qt_ms": 400, "heart_rate_bpm": 75, "method": "Fridericia"})
    assert bazett["value"] == pytest.approx(400 / math.sqrt(0.8), abs=0.05)
    assert bazett["value"] == pytest.approx(447.2, abs=0.05)
    assert fridericia["value"] == pytest.approx(400 / 0.8 ** (1 / 3), abs=0.05)
    assert fridericia["value"] == pytest.approx(430.9, abs=0.05)
    assert bazett["unit"] == "ms"


def test_qtc_rr_interval_equals_heart_rate_input() -> None:
    by_rate = _ok(qtc, {"qt_ms": 360, "heart_rate_bpm": 100, "method": "fridericia"})
    by_rr = _ok(qtc, {"qt_ms": 360, "rr_interval_ms": 600, "method": "fridericia"})
    assert by_rate["value"] == by_rr["value"] == pytest.approx(360 / 0.6 ** (1 / 3), abs=0.05)


# With RR = 1000 ms both corrections return QT unchanged, so QT sets QTc exactly.
@pytest.mark.parametrize(
    ("qt", "sex", "category"),
    [
        (390, "male", "short"),
        (391, "male", "normal"),
        (449, "male", "normal"),
        (450, "male", "prolonged"),
        (459, "female", "normal"),
        (460, "female", "prolonged"),
        (455, None, "borderline"),
        (460, None, "prolonged"),
        (500, "female", "prolonged"),
        (501, "male", "markedly prolonged"),
    ],
)
def test_qtc_category_thresholds(qt: float, sex: str | None, category: str) -> None:
    args: dict[str, Any] = {"qt_ms": qt, "rr_interval_ms": 1000}
    if sex is not None:
        args["sex"] = sex
    for method in ("bazett", "fridericia"):
        result = _ok(qtc, {**args, "method": method})
        assert result["value"] == pytest.approx(qt)
        assert result["category"] == category


def test_qtc_in_seconds_is_reported() -> None:
    message = _error(qtc, {"qt_ms": 0.44, "heart_rate_bpm": 70})
    assert "qt_ms=0.44" in message and "200" in message and "800" in message and "ms" in message
    assert "s × 1000" in message


def test_qtc_requires_exactly_one_rate_measure() -> None:
    assert "exactly one of heart_rate_bpm" in _error(
        qtc, {"qt_ms": 400, "heart_rate_bpm": 60, "rr_interval_ms": 1000}
    )
    assert "exactly one of heart_rate_bpm" in _error(qtc, {"qt_ms": 400})


# --------------------------------------------------------------------------------------------------
# Unit conversion — factors from molar masses (Young DS, Ann Intern Med 1987;106:114-29): glucose
# ×0.0555 (180.156 g/mol), creatinine ×88.4, cholesterol ×0.02586 (386.65), triglycerides ×0.01129
# (885.7), urea 60.06 g/mol, BUN ×0.357 (28.014); 1 lb = 0.45359237 kg, 1 in = 2.54 cm exactly.
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("analyte", "value", "from_unit", "to_unit", "expected", "tolerance"),
    [
        ("glucose", 100, "mg/dL", "mmol/L", 100 * 10 / 180.156, 1e-4),
        ("glucose", 100, "mg/dL", "mmol/L", 5.55, 0.01),  # Young 1987 factor 0.0555
        ("glucose", 7.0, "mmol/L", "mg/dL", 7.0 * 18.0156, 1e-3),
        ("creatinine", 1.0, "mg/dL", "µmol/L", 88.4, 1e-9),
        ("creatinine", 88.4, "umol/L", "mg/dL", 1.0, 1e-9),
        ("creatinine", 176.8, "μmol/L", "mg/dl", 2.0, 1e-9),  # Greek mu spelling
        ("cholesterol", 200, "mg/dL", "mmol/L", 200 * 0.02586, 0.001),
        ("ldl", 3.0, "mmol/L", "mg/dL", 3.0 * 38.665, 1e-3),
        ("triglycerides", 150, "mg/dL", "mmol/L", 150 * 0.01129, 0.001),
        ("hemoglobin", 13.5, "g/dL", "g/L", 135.0, 1e-9),
        ("haemoglobin", 120, "g/L", "g/dL", 12.0, 1e-9),
        ("bun", 28, "mg/dL", "mmol/L", 28 * 0.357, 0.01),
        ("urea", 10, "mmol/L", "mg/dL", 60.06, 1e-4),
        ("temperature", 37, "°C", "°F", 98.6, 1e-9),
        ("temperature", 98.6, "F", "C", 37.0, 1e-9),
        ("temperature", -40, "celsius", "fahrenheit", -40.0, 1e-9),
        ("weight", 154, "lb", "kg", 154 * 0.45359237, 1e-4),
        ("weight", 70, "kg", "lbs", 70 / 0.45359237, 1e-4),
        ("height", 69, "in", "cm", 175.26, 1e-9),
        ("height", 1.75, "m", "in", 175 / 2.54, 1e-4),
    ],
)
def test_convert_units_published_factors(
    analyte: str, value: float, from_unit: str, to_unit: str, expected: float, tolerance: float
) -> None:
    result = _ok(
        convert_units,
        {"analyte": analyte, "value": value, "from_unit": from_unit, "to_unit": to_unit},
    )
    assert result["value"] == pytest.approx(expected, abs=tolerance)


@pytest.mark.parametrize(
    ("analyte", "unit_a", "unit_b"),
    [
        ("glucose", "mg/dL", "mmol/L"),
        ("creatinine", "mg/dL", "µmol/L"),
        ("cholesterol", "mg/dL", "mmol/L"),
        ("triglycerides", "mg/dL", "mmol/L"),
        ("urea", "mg/dL", "mmol/L"),
        ("bun", "mg/dL", "mmol/L"),
        ("temperature", "°C", "°F"),
    ],
)
def test_convert_units_round_trip(analyte: str, unit_a: str, unit_b: str) -> None:
    there = _ok(
        convert_units, {"analyte": analyte, "value": 123.0, "from_unit": unit_a, "to_unit": unit_b}
    )
    back = _ok(
        convert_units,
        {"analyte": analyte, "value": there["value"], "from_unit": unit_b, "to_unit": unit_a},
    )
    assert back["value"] == pytest.approx(123.0, rel=1e-3)


def test_convert_units_unknown_analyte_lists_supported() -> None:
    message = _error(
        convert_units,
        {"analyte": "sodium", "value": 140, "from_unit": "mmol/L", "to_unit": "mg/dL"},
    )
    assert "sodium" in message
    for supported in ("glucose", "creatinine", "cholesterol", "triglycerides", "haemoglobin"):
        assert supported in message
    for supported in ("urea", "bun", "temperature", "weight", "height"):
        assert supported in message


def test_convert_units_unknown_unit_pair_lists_units() -> None:
    message = _error(
        convert_units, {"analyte": "glucose", "value": 1, "from_unit": "g/L", "to_unit": "mmol/L"}
    )
    assert "from_unit='g/L'" in message and "mg/dL" in message and "mmol/L" in message


def test_convert_units_rejects_impossible_values() -> None:
    negative = {"analyte": "glucose", "value": -5, "from_unit": "mmol/L", "to_unit": "mg/dL"}
    assert "cannot be negative" in _error(convert_units, negative)
    cold = {"analyte": "temperature", "value": -500, "from_unit": "F", "to_unit": "C"}
    assert "absolute zero" in _error(convert_units, cold)


# --------------------------------------------------------------------------------------------------
# Every tool through the LangChain interface
# --------------------------------------------------------------------------------------------------

VALID_INPUTS: dict[str, dict[str, Any]] = {
    "bmi": {"weight_kg": 80, "height_cm": 180},
    "bsa": {"weight_kg": 80, "height_cm": 180},
    "egfr_ckd_epi_2021": {"creatinine_mg_dl": 1.1, "age_years": 60, "sex": "male"},
    "cockcroft_gault": {"age_years": 60, "weight_kg": 80, "creatinine_mg_dl": 1.1, "sex": "male"},
    "cha2ds2_vasc": {"age_years": 70, "sex": "female", "hypertension": True},
    "has_bled": {"age_years": 70, "labile_inr": True},
    "curb_65": dict(_CURB_BASE),
    "wells_pe": {"heart_rate_bpm": 110, "haemoptysis": True},
    "qtc": {"qt_ms": 420, "heart_rate_bpm": 80},
    "convert_units": {"analyte": "glucose", "value": 90, "from_unit": "mg/dL", "to_unit": "mmol/L"},
}


def test_calculator_tools_lists_every_calculator() -> None:
    assert [tool.name for tool in CALCULATOR_TOOLS] == list(VALID_INPUTS)
    assert all(isinstance(tool, BaseTool) for tool in CALCULATOR_TOOLS)


@pytest.mark.parametrize("tool", CALCULATOR_TOOLS, ids=lambda tool: tool.name)
def test_description_cites_a_dated_source(tool: BaseTool) -> None:
    description = tool.description
    assert re.search(r"\b(19|20)\d{2}\b", description), description
    # A journal citation: volume:pages, e.g. "1987;317:1098" or "2021;385:1737-49".
    assert re.search(r"(19|20)\d{2};\s*\d+(\(Suppl \d+\))?:\w*\d+", description), description


@pytest.mark.parametrize("tool", CALCULATOR_TOOLS, ids=lambda tool: tool.name)
def test_numeric_arguments_declare_units(tool: BaseTool) -> None:
    schema = tool.get_input_jsonschema()
    for name, spec in schema["properties"].items():
        types = {spec.get("type")} | {option.get("type") for option in spec.get("anyOf", [])}
        if "number" in types and not (tool.name == "convert_units" and name == "value"):
            assert spec.get("unit"), f"{tool.name}.{name} has no unit"


@pytest.mark.parametrize("tool", CALCULATOR_TOOLS, ids=lambda tool: tool.name)
def test_valid_tool_call_returns_structured_result(tool: BaseTool) -> None:
    result = _ok(tool, VALID_INPUTS[tool.name])
    assert result["calculator"] == tool.name
    assert isinstance(result["value"], int | float)
    assert result["unit"] and result["formula"] and result["source"]
    # Through a model-style tool call the result arrives as a JSON ToolMessage.
    message = tool.invoke(
        {"type": "tool_call", "id": "call-1", "name": tool.name, "args": VALID_INPUTS[tool.name]}
    )
    assert isinstance(message, ToolMessage) and message.status == "success"
    assert json.loads(message.content)["value"] == result["value"]  # type: ignore[arg-type]


@pytest.mark.parametrize("tool", CALCULATOR_TOOLS, ids=lambda tool: tool.name)
def test_invalid_tool_call_returns_error_message(tool: BaseTool) -> None:
    bad_args = {**VALID_INPUTS[tool.name], "surprise_argument": 42}
    message = tool.invoke(
        {"type": "tool_call", "id": "call-2", "name": tool.name, "args": bad_args}
    )
    assert isinstance(message, ToolMessage) and message.status == "error"
    assert isinstance(message.content, str)
    assert "surprise_argument" in message.content
    assert "Accepted arguments" in message.content
