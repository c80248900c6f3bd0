"""Clinical calculators exposed as LangChain tools for the MedGemma reasoner.

Every tool has a typed pydantic argument schema whose field names carry their unit
(``weight_kg``, ``creatinine_mg_dl``) and whose ``Field(ge=, le=)`` bounds reject physiologically
implausible values. Because a language model calls these tools, bad input never raises into the
graph: a validation failure comes back to the model as a message that names the argument, the value
it sent, the accepted range and unit (and, where a unit mix-up is likely, how to convert), and other
tool errors come back as their message.

Each tool returns a small dict: ``calculator``, ``value``, ``unit``, ``formula``, ``source`` and,
where the score or guideline defines one, ``category`` and ``interpretation``; scores also list the
``points`` each item contributed. Values are rounded for reporting and categories are assigned to
the reported (rounded) value, so the two never disagree.

The tool descriptions the model sees are the docstrings of the ``_..._tool`` functions below; each
cites the published source of its formula.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal, get_args, get_origin

import annotated_types
from langchain_core.tools import BaseTool, StructuredTool, ToolException
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator
from pydantic.fields import FieldInfo

__all__ = [
    "CALCULATOR_TOOLS",
    "bmi",
    "bsa",
    "cha2ds2_vasc",
    "cockcroft_gault",
    "convert_units",
    "curb_65",
    "egfr_ckd_epi_2021",
    "has_bled",
    "kdigo_gfr_category",
    "qtc",
    "wells_pe",
    "who_bmi_category",
]

# --------------------------------------------------------------------------------------------------
# Shared argument types
# --------------------------------------------------------------------------------------------------

_SEX_ALIASES = {
    "female": "female",
    "f": "female",
    "woman": "female",
    "w": "female",
    "male": "male",
    "m": "male",
    "man": "male",
}


def _normalise_sex(value: object) -> object:
    """Map common spellings of sex ('F', 'Woman', 'male') onto 'female' / 'male'."""
    if isinstance(value, str):
        return _SEX_ALIASES.get(value.strip().lower(), value)
    return value


def _normalise_method(value: object) -> object:
    """Lower-case a method name and drop spaces/hyphens, so 'Bazett' and 'Du Bois' are accepted."""
    return (
        value.strip().lower().replace(" ", "").replace("-", "") if isinstance(value, str) else value
    )


Sex = Annotated[Literal["female", "male"], BeforeValidator(_normalise_sex)]


def _unit(unit: str) -> dict[str, Any]:
    """JSON-schema extra that records a field's unit (shown to the model and used in errors)."""
    return {"unit": unit}


class _CalculatorArgs(BaseModel):
    """Base for calculator argument schemas: unknown arguments are rejected, not ignored."""

    model_config = ConfigDict(extra="forbid")


# Hints appended to an out-of-range message when the likely cause is a unit mix-up.
_UNIT_HINTS: dict[str, str] = {
    "weight_kg": "a weight in pounds converts with kg = lb × 0.45359237 (or call convert_units).",
    "height_cm": (
        "a height in metres converts with cm = m × 100; in inches with cm = in × 2.54 "
        "(or call convert_units)."
    ),
    "creatinine_mg_dl": (
        "a creatinine in µmol/L converts with mg/dL = µmol/L ÷ 88.4 (or call convert_units)."
    ),
    "qt_ms": "a QT interval in seconds converts with ms = s × 1000.",
    "rr_interval_ms": "an RR interval in seconds converts with ms = s × 1000.",
    "urea_mmol_l": "a BUN in mg/dL should be passed as bun_mg_dl instead.",
    "bun_mg_dl": "a urea in mmol/L should be passed as urea_mmol_l instead.",
}


# --------------------------------------------------------------------------------------------------
# Validation error -> message for the model
# --------------------------------------------------------------------------------------------------


def _format_number(number: float) -> str:
    """Render a bound without trailing zeros (20, 0.1, 0.45359237)."""
    return f"{number:g}"


def _field_unit(field: FieldInfo) -> str:
    """The unit recorded in a field's JSON-schema extra, or '' when it has none."""
    extra = field.json_schema_extra
    if isinstance(extra, dict):
        unit = extra.get("unit")
        if isinstance(unit, str):
            return unit
    return ""


def _field_bounds(field: FieldInfo) -> tuple[str | None, str | None]:
    """Lower and upper bound of a field as text ('≥ 0.1', '≤ 25'), from its Field constraints."""
    lower: str | None = None
    upper: str | None = None
    for constraint in field.metadata:
        if isinstance(constraint, annotated_types.Ge):
            lower = f"≥ {_format_number(float(constraint.ge))}"  # type: ignore[arg-type]
        elif isinstance(constraint, annotated_types.Gt):
            lower = f"> {_format_number(float(constraint.gt))}"  # type: ignore[arg-type]
        elif isinstance(constraint, annotated_types.Le):
            upper = f"≤ {_format_number(float(constraint.le))}"  # type: ignore[arg-type]
        elif isinstance(constraint, annotated_types.Lt):
            upper = f"< {_format_number(float(constraint.lt))}"  # type: ignore[arg-type]
    return lower, upper


def _literal_choices(annotation: object) -> list[str]:
    """All values of Literal types found anywhere inside an annotation (Optional, Annotated)."""
    origin = get_origin(annotation)
    if origin is Literal:
        return [str(choice) for choice in get_args(annotation)]
    if origin is Annotated:
        return _literal_choices(get_args(annotation)[0])
    choices: list[str] = []
    for argument in get_args(annotation):
        choices.extend(_literal_choices(argument))
    return choices


def _field_spec(name: str, field: FieldInfo) -> str:
    """One-line description of what a field accepts, e.g. 'creatinine_mg_dl: 0.1 to 25 mg/dL'."""
    unit = _field_unit(field)
    choices = _literal_choices(field.annotation)
    lower, upper = _field_bounds(field)
    if choices:
        accepted = "one of " + ", ".join(repr(choice) for choice in choices)
    elif field.annotation is bool:
        accepted = "true or false"
    elif lower is not None or upper is not None:
        accepted = "a number " + " and ".join(bound for bound in (lower, upper) if bound)
        if unit:
            accepted += f" {unit}"
    elif unit:
        accepted = f"a value in {unit}"
    else:
        accepted = "text"
    optional = " (optional)" if not field.is_required() else ""
    return f"{name}{optional}: {accepted}"


def _describe_error(schema: type[BaseModel], error: Any) -> str:
    """Turn one pydantic error entry into a sentence naming the argument, value and fix."""
    location = error.get("loc", ())
    kind = error.get("type", "")
    message = str(error.get("msg", "")).removeprefix("Value error, ")
    if not location:
        return message
    name = str(location[0])
    field = schema.model_fields.get(name)
    if kind == "extra_forbidden" or field is None:
        return (
            f"'{name}' is not an argument of this tool (got {name}={error.get('input')!r}); "
            "use the argument names and units listed below."
        )
    spec = _field_spec(name, field)
    if kind == "missing":
        return f"{name} is required; expected {spec.split(': ', 1)[1]}."
    value = error.get("input")
    if kind in {"greater_than_equal", "greater_than", "less_than_equal", "less_than"}:
        lower, upper = _field_bounds(field)
        bounds = " and ".join(bound for bound in (lower, upper) if bound)
        unit = _field_unit(field)
        unit_text = f" {unit}" if unit else ""
        sentence = f"{name}={value!r} is outside the accepted range ({bounds}{unit_text})."
        hint = _UNIT_HINTS.get(name)
        return f"{sentence} If the value is in another unit: {hint}" if hint else sentence
    return f"{name}={value!r} is not valid ({message}); expected {spec.split(': ', 1)[1]}."


def _validation_error_handler(tool_name: str, schema: type[BaseModel]) -> Callable[[Any], str]:
    """Build the ``handle_validation_error`` callback for one tool."""

    def handle(error: Any) -> str:
        problems = (
            [_describe_error(schema, entry) for entry in error.errors()]
            if isinstance(error, ValidationError)
            else [str(error)]
        )
        accepted = "; ".join(
            _field_spec(name, field) for name, field in schema.model_fields.items()
        )
        lines = [f"Invalid arguments for tool '{tool_name}':"]
        lines.extend(f"- {problem}" for problem in problems)
        lines.append(f"Accepted arguments: {accepted}.")
        lines.append("Correct the arguments and call the tool again.")
        return "\n".join(lines)

    return handle


def _make_tool(name: str, func: Callable[..., dict[str, Any]], schema: type[BaseModel]) -> BaseTool:
    """Wrap a calculator function as a StructuredTool that reports bad input as a message."""
    return StructuredTool.from_function(
        func=func,
        name=name,
        description=inspect.cleandoc(func.__doc__ or ""),
        args_schema=schema,
        handle_validation_error=_validation_error_handler(name, schema),
        handle_tool_error=True,
    )


def _result(
    calculator: str,
    value: float,
    unit: str,
    formula: str,
    source: str,
    **extra: Any,
) -> dict[str, Any]:
    """Assemble the common result shape; ``extra`` adds category, interpretation, points, ..."""
    result: dict[str, Any] = {
        "calculator": calculator,
        "value": value,
        "unit": unit,
        "formula": formula,
    }
    result.update({key: item for key, item in extra.items() if item is not None})
    result["source"] = source
    return result


# --------------------------------------------------------------------------------------------------
# BMI
# --------------------------------------------------------------------------------------------------

_BMI_SOURCE = (
    "Keys A et al. Indices of relative weight and obesity. J Chronic Dis 1972;25:329-43; "
    "categories: WHO. Obesity: preventing and managing the global epidemic. "
    "WHO Technical Report Series 894, 2000."
)


def who_bmi_category(bmi_kg_m2: float) -> str:
    """WHO (2000) adult BMI category for a BMI in kg/m²."""
    if bmi_kg_m2 < 18.5:
        return "underweight"
    if bmi_kg_m2 < 25.0:
        return "normal weight"
    if bmi_kg_m2 < 30.0:
        return "overweight (pre-obese)"
    if bmi_kg_m2 < 35.0:
        return "obese class I"
    if bmi_kg_m2 < 40.0:
        return "obese class II"
    return "obese class III"


class BMIArgs(_CalculatorArgs):
    """Arguments of the ``bmi`` tool."""

    weight_kg: float = Field(
        ge=0.5, le=650, description="Body weight in kilograms (kg).", json_schema_extra=_unit("kg")
    )
    height_cm: float = Field(
        ge=30, le=280, description="Body height in centimetres (cm).", json_schema_extra=_unit("cm")
    )


def _bmi_tool(weight_kg: float, height_cm: float) -> dict[str, Any]:
    """Body-mass index (BMI) = weight (kg) / height (m)², in kg/m², with the WHO adult category.

    Categories (WHO 2000, adults only): <18.5 underweight, 18.5-24.99 normal weight,
    25-29.99 overweight, 30-34.99 obese class I, 35-39.99 class II, >=40 class III.
    Source: Keys A et al., J Chronic Dis 1972;25:329-43 (the index); WHO Technical Report
    Series 894, 2000 (the categories). Give weight in kg and height in cm.
    """
    height_m = height_cm / 100.0
    value = round(weight_kg / height_m**2, 2)
    return _result(
        "bmi",
        value,
        "kg/m²",
        "BMI = weight_kg / (height_cm / 100)²",
        _BMI_SOURCE,
        category=who_bmi_category(value),
        interpretation="WHO adult categories; not valid for children, pregnancy or amputees.",
    )


# --------------------------------------------------------------------------------------------------
# BSA
# --------------------------------------------------------------------------------------------------

_MOSTELLER_SOURCE = (
    "Mosteller RD. Simplified calculation of body-surface area. N Engl J Med 1987;317:1098."
)
_DUBOIS_SOURCE = (
    "Du Bois D, Du Bois EF. A formula to estimate the approximate surface area if height and "
    "weight be known. Arch Intern Med 1916;17:863-71."
)


class BSAArgs(_CalculatorArgs):
    """Arguments of the ``bsa`` tool."""

    weight_kg: float = Field(
        ge=0.5, le=650, description="Body weight in kilograms (kg).", json_schema_extra=_unit("kg")
    )
    height_cm: float = Field(
        ge=30, le=280, description="Body height in centimetres (cm).", json_schema_extra=_unit("cm")
    )
    method: Annotated[Literal["mosteller", "dubois"], BeforeValidator(_normalise_method)] = Field(
        default="mosteller", description="'mosteller' (default) or 'dubois'."
    )


def _bsa_tool(
    weight_kg: float, height_cm: float, method: Literal["mosteller", "dubois"] = "mosteller"
) -> dict[str, Any]:
    """Body-surface area (BSA) in m² from weight (kg) and height (cm).

    method='mosteller' (default): BSA = sqrt(height_cm × weight_kg / 3600)
    (Mosteller RD, N Engl J Med 1987;317:1098).
    method='dubois': BSA = 0.007184 × weight_kg^0.425 × height_cm^0.725
    (Du Bois D, Du Bois EF, Arch Intern Med 1916;17:863-71).
    Used for dosing drugs per m² and indexing cardiac output.
    """
    if method == "dubois":
        value = 0.007184 * weight_kg**0.425 * height_cm**0.725
        formula = "BSA = 0.007184 × weight_kg^0.425 × height_cm^0.725 (DuBois)"
        source = _DUBOIS_SOURCE
    else:
        value = math.sqrt(height_cm * weight_kg / 3600.0)
        formula = "BSA = sqrt(height_cm × weight_kg / 3600) (Mosteller)"
        source = _MOSTELLER_SOURCE
    return _result("bsa", round(value, 3), "m²", formula, source, method=method)


# --------------------------------------------------------------------------------------------------
# eGFR, CKD-EPI 2021 creatinine equation
# --------------------------------------------------------------------------------------------------

_CKD_EPI_SOURCE = (
    "Inker LA, Eneanya ND, Coresh J, et al. New creatinine- and cystatin C-based equations to "
    "estimate GFR without race. N Engl J Med 2021;385:1737-49; categories: KDIGO 2012 CKD "
    "guideline, Kidney Int Suppl 2013;3:1-150."
)

# (lower bound in mL/min/1.73 m², KDIGO category, description), highest first.
_KDIGO_GFR_CATEGORIES: tuple[tuple[float, str, str], ...] = (
    (90.0, "G1", "normal or high"),
    (60.0, "G2", "mildly decreased"),
    (45.0, "G3a", "mildly to moderately decreased"),
    (30.0, "G3b", "moderately to severely decreased"),
    (15.0, "G4", "severely decreased"),
    (0.0, "G5", "kidney failure"),
)


def kdigo_gfr_category(egfr_ml_min_1_73m2: float) -> tuple[str, str]:
    """KDIGO 2012 GFR category (e.g. ('G3a', 'mildly to moderately decreased')) for an eGFR."""
    for lower_bound, category, description in _KDIGO_GFR_CATEGORIES:
        if egfr_ml_min_1_73m2 >= lower_bound:
            return category, description
    return _KDIGO_GFR_CATEGORIES[-1][1], _KDIGO_GFR_CATEGORIES[-1][2]


class EGFRArgs(_CalculatorArgs):
    """Arguments of the ``egfr_ckd_epi_2021`` tool."""

    creatinine_mg_dl: float = Field(
        ge=0.1,
        le=25,
        description="Serum creatinine in mg/dL (IDMS-standardised). Convert µmol/L first.",
        json_schema_extra=_unit("mg/dL"),
    )
    age_years: float = Field(
        ge=18, le=120, description="Age in years (adults only).", json_schema_extra=_unit("years")
    )
    sex: Sex = Field(description="'female' or 'male'.")


def _egfr_ckd_epi_2021_tool(
    creatinine_mg_dl: float, age_years: float, sex: Literal["female", "male"]
) -> dict[str, Any]:
    """Estimated GFR (mL/min/1.73 m²) by the race-free CKD-EPI 2021 creatinine equation.

    eGFR = 142 × min(Scr/κ, 1)^α × max(Scr/κ, 1)^-1.200 × 0.9938^age × 1.012 [if female],
    κ = 0.7 (female) / 0.9 (male), α = -0.241 (female) / -0.302 (male), Scr in mg/dL.
    Adults (>= 18 years) with stable creatinine only. Returns the KDIGO G category
    (G1 >=90, G2 60-89, G3a 45-59, G3b 30-44, G4 15-29, G5 <15).
    Source: Inker LA et al., N Engl J Med 2021;385:1737-49; KDIGO 2012, Kidney Int Suppl
    2013;3:1-150.
    """
    female = sex == "female"
    kappa = 0.7 if female else 0.9
    alpha = -0.241 if female else -0.302
    ratio = creatinine_mg_dl / kappa
    egfr = 142.0 * min(ratio, 1.0) ** alpha * max(ratio, 1.0) ** -1.200 * 0.9938**age_years
    if female:
        egfr *= 1.012
    value = round(egfr, 1)
    category, description = kdigo_gfr_category(value)
    return _result(
        "egfr_ckd_epi_2021",
        value,
        "mL/min/1.73 m²",
        "142 × min(Scr/κ,1)^α × max(Scr/κ,1)^-1.200 × 0.9938^age × 1.012 [female]; "
        f"κ={kappa}, α={alpha}",
        _CKD_EPI_SOURCE,
        category=category,
        interpretation=f"KDIGO {category}: GFR {description}."
        + (" CKD requires <60 for >3 months or markers of kidney damage." if value >= 60 else ""),
    )


# --------------------------------------------------------------------------------------------------
# Cockcroft-Gault creatinine clearance
# --------------------------------------------------------------------------------------------------

_COCKCROFT_GAULT_SOURCE = (
    "Cockcroft DW, Gault MH. Prediction of creatinine clearance from serum creatinine. "
    "Nephron 1976;16:31-41."
)


class CockcroftGaultArgs(_CalculatorArgs):
    """Arguments of the ``cockcroft_gault`` tool."""

    age_years: float = Field(
        ge=18, le=120, description="Age in years (adults only).", json_schema_extra=_unit("years")
    )
    weight_kg: float = Field(
        ge=20,
        le=400,
        description="Actual body weight in kilograms (kg).",
        json_schema_extra=_unit("kg"),
    )
    creatinine_mg_dl: float = Field(
        ge=0.1,
        le=25,
        description="Serum creatinine in mg/dL. Convert µmol/L first.",
        json_schema_extra=_unit("mg/dL"),
    )
    sex: Sex = Field(description="'female' or 'male'.")


def _cockcroft_gault_tool(
    age_years: float, weight_kg: float, creatinine_mg_dl: float, sex: Literal["female", "male"]
) -> dict[str, Any]:
    """Creatinine clearance (mL/min, not indexed to BSA) by the Cockcroft-Gault equation.

    CrCl = (140 - age) × weight_kg / (72 × Scr_mg_dl) × 0.85 [if female], using ACTUAL body
    weight as given. Used for renal drug-dosing thresholds in product labels.
    Source: Cockcroft DW, Gault MH, Nephron 1976;16:31-41.
    """
    clearance = (140.0 - age_years) * weight_kg / (72.0 * creatinine_mg_dl)
    if sex == "female":
        clearance *= 0.85
    return _result(
        "cockcroft_gault",
        round(clearance, 1),
        "mL/min",
        "CrCl = (140 - age) × weight_kg / (72 × Scr) × 0.85 [female]",
        _COCKCROFT_GAULT_SOURCE,
        interpretation=(
            "Estimated creatinine clearance with actual body weight; it overestimates in obesity "
            "and oedema and is unreliable when creatinine is not stable."
        ),
    )


# --------------------------------------------------------------------------------------------------
# CHA2DS2-VASc
# --------------------------------------------------------------------------------------------------

_CHA2DS2_VASC_SOURCE = (
    "Lip GYH, Nieuwlaat R, Pisters R, Lane DA, Crijns HJGM. Refining clinical risk stratification "
    "for predicting stroke and thromboembolism in atrial fibrillation using a novel risk "
    "factor-based approach: the Euro Heart Survey on atrial fibrillation. Chest 2010;137:263-72; "
    "treatment thresholds: Hindricks G et al. 2020 ESC AF guidelines. Eur Heart J 2021;42:373-498."
)


class CHA2DS2VAScArgs(_CalculatorArgs):
    """Arguments of the ``cha2ds2_vasc`` tool."""

    age_years: float = Field(
        ge=18, le=120, description="Age in years.", json_schema_extra=_unit("years")
    )
    sex: Sex = Field(description="'female' or 'male'.")
    congestive_heart_failure: bool = Field(
        default=False, description="Heart failure or moderate-severe LV systolic dysfunction."
    )
    hypertension: bool = Field(default=False, description="Hypertension (history or treated).")
    diabetes: bool = Field(default=False, description="Diabetes mellitus.")
    stroke_tia_thromboembolism: bool = Field(
        default=False, description="Prior stroke, TIA or systemic thromboembolism."
    )
    vascular_disease: bool = Field(
        default=False,
        description="Prior myocardial infarction, peripheral artery disease or aortic plaque.",
    )


def _cha2ds2_vasc_tool(
    age_years: float,
    sex: Literal["female", "male"],
    congestive_heart_failure: bool = False,
    hypertension: bool = False,
    diabetes: bool = False,
    stroke_tia_thromboembolism: bool = False,
    vascular_disease: bool = False,
) -> dict[str, Any]:
    """CHA2DS2-VASc stroke-risk score (0-9) for non-valvular atrial fibrillation.

    Points: congestive heart failure 1, hypertension 1, age >=75 2, diabetes 1,
    prior stroke/TIA/thromboembolism 2, vascular disease 1, age 65-74 1, female sex 1.
    Category (2020 ESC): low = 0 (men) / 1 (women): no anticoagulation; intermediate = 1 / 2:
    oral anticoagulation should be considered; high = >=2 / >=3: oral anticoagulation recommended.
    Source: Lip GYH et al., Chest 2010;137:263-72; Hindricks G et al., Eur Heart J 2021;42:373-498.
    """
    if age_years >= 75:
        age_points = 2
    elif age_years >= 65:
        age_points = 1
    else:
        age_points = 0
    points = {
        "congestive_heart_failure": int(congestive_heart_failure),
        "hypertension": int(hypertension),
        "age": age_points,
        "diabetes": int(diabetes),
        "stroke_tia_thromboembolism": 2 * int(stroke_tia_thromboembolism),
        "vascular_disease": int(vascular_disease),
        "sex_female": int(sex == "female"),
    }
    score = sum(points.values())
    # Female sex is a risk modifier, not a risk factor on its own: ESC thresholds are one higher.
    score_without_sex = score - points["sex_female"]
    if score_without_sex == 0:
        category = "low"
        interpretation = "Low stroke risk: oral anticoagulation not recommended."
    elif score_without_sex == 1:
        category = "intermediate"
        interpretation = "Oral anticoagulation should be considered (ESC 2020, class IIa)."
    else:
        category = "high"
        interpretation = "Oral anticoagulation recommended (ESC 2020, class I)."
    return _result(
        "cha2ds2_vasc",
        score,
        "points",
        "sum of CHA2DS2-VASc item points (max 9)",
        _CHA2DS2_VASC_SOURCE,
        category=category,
        interpretation=interpretation,
        points=points,
    )


# --------------------------------------------------------------------------------------------------
# HAS-BLED
# --------------------------------------------------------------------------------------------------

_HAS_BLED_SOURCE = (
    "Pisters R, Lane DA, Nieuwlaat R, de Vos CB, Crijns HJGM, Lip GYH. A novel user-friendly score "
    "(HAS-BLED) to assess 1-year risk of major bleeding in patients with atrial fibrillation: the "
    "Euro Heart Survey. Chest 2010;138:1093-100."
)


class HASBLEDArgs(_CalculatorArgs):
    """Arguments of the ``has_bled`` tool."""

    age_years: float = Field(
        ge=18, le=120, description="Age in years.", json_schema_extra=_unit("years")
    )
    uncontrolled_hypertension: bool = Field(
        default=False, description="Uncontrolled hypertension, systolic BP > 160 mmHg."
    )
    abnormal_renal_function: bool = Field(
        default=False,
        description="Dialysis, renal transplant or serum creatinine >= 200 µmol/L (2.26 mg/dL).",
    )
    abnormal_liver_function: bool = Field(
        default=False,
        description="Cirrhosis, or bilirubin > 2× ULN with AST/ALT/ALP > 3× ULN.",
    )
    prior_stroke: bool = Field(default=False, description="Previous stroke.")
    bleeding_history_or_predisposition: bool = Field(
        default=False, description="Previous major bleeding or predisposition (e.g. anaemia)."
    )
    labile_inr: bool = Field(
        default=False, description="Unstable/high INRs or time in therapeutic range < 60%."
    )
    antiplatelet_or_nsaid_use: bool = Field(
        default=False, description="Concomitant antiplatelet drugs or NSAIDs."
    )
    alcohol_excess: bool = Field(default=False, description="Alcohol >= 8 drinks per week.")


def _has_bled_tool(
    age_years: float,
    uncontrolled_hypertension: bool = False,
    abnormal_renal_function: bool = False,
    abnormal_liver_function: bool = False,
    prior_stroke: bool = False,
    bleeding_history_or_predisposition: bool = False,
    labile_inr: bool = False,
    antiplatelet_or_nsaid_use: bool = False,
    alcohol_excess: bool = False,
) -> dict[str, Any]:
    """HAS-BLED 1-year major-bleeding risk score (0-9) for patients with atrial fibrillation.

    One point each: uncontrolled hypertension (SBP >160), abnormal renal function, abnormal liver
    function, prior stroke, bleeding history/predisposition, labile INR, elderly (age >65),
    antiplatelet/NSAID use, alcohol excess. Score >=3 = high bleeding risk: correct modifiable
    factors and review more often (a high score alone is not a reason to withhold anticoagulation).
    Source: Pisters R et al., Chest 2010;138:1093-100.
    """
    points = {
        "uncontrolled_hypertension": int(uncontrolled_hypertension),
        "abnormal_renal_function": int(abnormal_renal_function),
        "abnormal_liver_function": int(abnormal_liver_function),
        "prior_stroke": int(prior_stroke),
        "bleeding_history_or_predisposition": int(bleeding_history_or_predisposition),
        "labile_inr": int(labile_inr),
        "elderly_over_65": int(age_years > 65),
        "antiplatelet_or_nsaid_use": int(antiplatelet_or_nsaid_use),
        "alcohol_excess": int(alcohol_excess),
    }
    score = sum(points.values())
    if score >= 3:
        category = "high"
        interpretation = (
            "High bleeding risk (>=3): address modifiable risk factors and review more often."
        )
    else:
        category = "low to moderate"
        interpretation = "Bleeding risk not high (<3); reassess modifiable risk factors."
    return _result(
        "has_bled",
        score,
        "points",
        "sum of HAS-BLED item points (max 9)",
        _HAS_BLED_SOURCE,
        category=category,
        interpretation=interpretation,
        points=points,
    )


# --------------------------------------------------------------------------------------------------
# CURB-65
# --------------------------------------------------------------------------------------------------

_CURB_65_SOURCE = (
    "Lim WS, van der Eerden MM, Laing R, et al. Defining community acquired pneumonia severity on "
    "presentation to hospital: an international derivation and validation study. "
    "Thorax 2003;58:377-82; management: Lim WS et al. BTS guidelines for community acquired "
    "pneumonia in adults: update 2009. Thorax 2009;64(Suppl 3):iii1-55."
)

# BUN is mg/dL of urea nitrogen; each urea molecule carries two N atoms (2 × 14.007 g/mol).
_UREA_NITROGEN_G_PER_MOL = 28.014


class CURB65Args(_CalculatorArgs):
    """Arguments of the ``curb_65`` tool."""

    confusion: bool = Field(description="New mental confusion (AMTS <= 8 or disorientation).")
    urea_mmol_l: float | None = Field(
        default=None,
        ge=0.5,
        le=150,
        description="Blood urea in mmol/L. Give this OR bun_mg_dl.",
        json_schema_extra=_unit("mmol/L"),
    )
    bun_mg_dl: float | None = Field(
        default=None,
        ge=1,
        le=420,
        description="Blood urea nitrogen in mg/dL. Give this OR urea_mmol_l.",
        json_schema_extra=_unit("mg/dL"),
    )
    respiratory_rate_per_min: float = Field(
        ge=0, le=80, description="Respiratory rate in breaths/min.", json_schema_extra=_unit("/min")
    )
    systolic_bp_mmhg: float = Field(
        ge=30,
        le=300,
        description="Systolic blood pressure in mmHg.",
        json_schema_extra=_unit("mmHg"),
    )
    diastolic_bp_mmhg: float = Field(
        ge=10,
        le=200,
        description="Diastolic blood pressure in mmHg.",
        json_schema_extra=_unit("mmHg"),
    )
    age_years: float = Field(
        ge=18, le=120, description="Age in years.", json_schema_extra=_unit("years")
    )

    @model_validator(mode="after")
    def _one_urea_measure(self) -> CURB65Args:
        """Exactly one of urea (mmol/L) and BUN (mg/dL) must be given."""
        if (self.urea_mmol_l is None) == (self.bun_mg_dl is None):
            raise ValueError(
                "give exactly one of urea_mmol_l (urea in mmol/L) or bun_mg_dl (BUN in mg/dL), "
                "not both and not neither."
            )
        if self.diastolic_bp_mmhg >= self.systolic_bp_mmhg:
            raise ValueError(
                f"diastolic_bp_mmhg={self.diastolic_bp_mmhg:g} must be lower than "
                f"systolic_bp_mmhg={self.systolic_bp_mmhg:g}; check the blood pressure reading."
            )
        return self


def _curb_65_tool(
    confusion: bool,
    respiratory_rate_per_min: float,
    systolic_bp_mmhg: float,
    diastolic_bp_mmhg: float,
    age_years: float,
    urea_mmol_l: float | None = None,
    bun_mg_dl: float | None = None,
) -> dict[str, Any]:
    """CURB-65 severity score (0-5) for community-acquired pneumonia.

    One point each: Confusion; Urea >7 mmol/L (BUN is converted: mmol/L = mg/dL × 10 / 28.014,
    i.e. BUN > ~19.6 mg/dL); Respiratory rate >=30/min; Blood pressure systolic <90 or diastolic
    <=60 mmHg; age >=65. Give urea_mmol_l OR bun_mg_dl.
    0-1 low severity (30-day mortality <2% in the derivation study): consider home treatment;
    2 moderate: consider hospital-supervised treatment; 3-5 high: hospital, assess for ICU
    (especially 4-5). Source: Lim WS et al., Thorax 2003;58:377-82; BTS guideline, Thorax
    2009;64(Suppl 3):iii1-55.
    """
    if urea_mmol_l is None:
        if bun_mg_dl is None:  # the schema forbids this; guard direct calls
            raise ToolException("give exactly one of urea_mmol_l or bun_mg_dl.")
        urea_mmol_l = bun_mg_dl * 10.0 / _UREA_NITROGEN_G_PER_MOL
    points = {
        "confusion": int(confusion),
        "urea_over_7_mmol_l": int(urea_mmol_l > 7.0),
        "respiratory_rate_30_or_more": int(respiratory_rate_per_min >= 30),
        "low_blood_pressure": int(systolic_bp_mmhg < 90 or diastolic_bp_mmhg <= 60),
        "age_65_or_more": int(age_years >= 65),
    }
    score = sum(points.values())
    if score <= 1:
        category = "low"
        interpretation = "Low severity: consider treatment at home."
    elif score == 2:
        category = "moderate"
        interpretation = "Moderate severity: consider short-stay or hospital-supervised treatment."
    else:
        category = "high"
        interpretation = "High severity: manage in hospital as severe pneumonia"
        interpretation += "; assess for ICU." if score >= 4 else "."
    return _result(
        "curb_65",
        score,
        "points",
        "sum of CURB-65 item points (max 5)",
        _CURB_65_SOURCE,
        category=category,
        interpretation=interpretation,
        points=points,
        urea_mmol_l_used=round(urea_mmol_l, 2),
    )


# --------------------------------------------------------------------------------------------------
# Wells score for pulmonary embolism
# --------------------------------------------------------------------------------------------------

_WELLS_PE_SOURCE = (
    "Wells PS, Anderson DR, Rodger M, et al. Derivation of a simple clinical model to categorize "
    "patients probability of pulmonary embolism: increasing the models utility with the SimpliRED "
    "D-dimer. Thromb Haemost 2000;83:416-20."
)


class WellsPEArgs(_CalculatorArgs):
    """Arguments of the ``wells_pe`` tool."""

    clinical_signs_of_dvt: bool = Field(
        default=False,
        description="Clinical signs and symptoms of DVT (leg swelling, pain on palpation).",
    )
    pe_most_likely_diagnosis: bool = Field(
        default=False, description="PE is the most likely diagnosis, or equally likely."
    )
    heart_rate_bpm: float = Field(
        ge=20, le=300, description="Heart rate in beats per minute.", json_schema_extra=_unit("bpm")
    )
    immobilisation_or_recent_surgery: bool = Field(
        default=False, description="Immobilisation >= 3 days or surgery in the previous 4 weeks."
    )
    previous_dvt_or_pe: bool = Field(default=False, description="Previous DVT or PE.")
    haemoptysis: bool = Field(default=False, description="Haemoptysis.")
    active_malignancy: bool = Field(
        default=False, description="Cancer treated within 6 months or palliative."
    )


def _wells_pe_tool(
    heart_rate_bpm: float,
    clinical_signs_of_dvt: bool = False,
    pe_most_likely_diagnosis: bool = False,
    immobilisation_or_recent_surgery: bool = False,
    previous_dvt_or_pe: bool = False,
    haemoptysis: bool = False,
    active_malignancy: bool = False,
) -> dict[str, Any]:
    """Wells score for pulmonary embolism (0-12.5) and the pre-test probability category.

    Points: clinical signs of DVT 3; PE most likely diagnosis 3; heart rate >100 bpm 1.5;
    immobilisation >=3 days or surgery within 4 weeks 1.5; previous DVT/PE 1.5; haemoptysis 1;
    malignancy 1. Three-tier: <2 low, 2-6 moderate, >6 high. Two-tier: <=4 PE unlikely,
    >4 PE likely. Source: Wells PS et al., Thromb Haemost 2000;83:416-20.
    """
    points = {
        "clinical_signs_of_dvt": 3.0 * clinical_signs_of_dvt,
        "pe_most_likely_diagnosis": 3.0 * pe_most_likely_diagnosis,
        "heart_rate_over_100": 1.5 * (heart_rate_bpm > 100),
        "immobilisation_or_recent_surgery": 1.5 * immobilisation_or_recent_surgery,
        "previous_dvt_or_pe": 1.5 * previous_dvt_or_pe,
        "haemoptysis": 1.0 * haemoptysis,
        "active_malignancy": 1.0 * active_malignancy,
    }
    score = sum(points.values())
    if score < 2:
        category = "low"
    elif score <= 6:
        category = "moderate"
    else:
        category = "high"
    two_tier = "PE likely" if score > 4 else "PE unlikely"
    return _result(
        "wells_pe",
        score,
        "points",
        "sum of Wells PE item points (max 12.5)",
        _WELLS_PE_SOURCE,
        category=category,
        two_tier=two_tier,
        interpretation=f"{category.capitalize()} clinical probability (three-tier); {two_tier} "
        "(two-tier, >4 = likely).",
        points=points,
    )


# --------------------------------------------------------------------------------------------------
# QTc
# --------------------------------------------------------------------------------------------------

_QTC_SOURCE = (
    "Bazett HC. An analysis of the time-relations of electrocardiograms. Heart 1920;7:353-70; "
    "Fridericia LS. Die Systolendauer im Elektrokardiogramm bei normalen Menschen und bei "
    "Herzkranken. Acta Med Scand 1920;53:469-86; thresholds: Rautaharju PM et al. AHA/ACCF/HRS "
    "recommendations for the standardization and interpretation of the electrocardiogram, part IV. "
    "Circulation 2009;119:e241-50; Drew BJ et al. Prevention of torsade de pointes in hospital "
    "settings. Circulation 2010;121:1047-60."
)


class QTcArgs(_CalculatorArgs):
    """Arguments of the ``qtc`` tool."""

    qt_ms: float = Field(
        ge=200,
        le=800,
        description="Measured QT interval in milliseconds.",
        json_schema_extra=_unit("ms"),
    )
    heart_rate_bpm: float | None = Field(
        default=None,
        ge=20,
        le=300,
        description="Heart rate in beats per minute. Give this OR rr_interval_ms.",
        json_schema_extra=_unit("bpm"),
    )
    rr_interval_ms: float | None = Field(
        default=None,
        ge=200,
        le=3000,
        description="RR interval in milliseconds. Give this OR heart_rate_bpm.",
        json_schema_extra=_unit("ms"),
    )
    method: Annotated[Literal["bazett", "fridericia"], BeforeValidator(_normalise_method)] = Field(
        default="bazett", description="'bazett' (default) or 'fridericia'."
    )
    sex: Sex | None = Field(
        default=None, description="'female' or 'male' (optional; sets the prolongation threshold)."
    )

    @model_validator(mode="after")
    def _one_rate_measure(self) -> QTcArgs:
        """Exactly one of heart rate and RR interval must be given."""
        if (self.heart_rate_bpm is None) == (self.rr_interval_ms is None):
            raise ValueError(
                "give exactly one of heart_rate_bpm (beats/min) or rr_interval_ms (milliseconds), "
                "not both and not neither."
            )
        return self


def _qtc_category(qtc_ms: float, sex: Literal["female", "male"] | None) -> tuple[str, str]:
    """QTc category and sentence: short <=390, prolonged >=450 (men) / >=460 (women), >500."""
    if qtc_ms > 500:
        return "markedly prolonged", "QTc >500 ms: high risk of torsade de pointes."
    if qtc_ms <= 390:
        return "short", "QTc <=390 ms: short QT."
    if sex == "female":
        threshold = 460.0
    elif sex == "male":
        threshold = 450.0
    else:
        if 450 <= qtc_ms < 460:
            return "borderline", "Prolonged for men (>=450 ms), normal for women (<460 ms)."
        threshold = 460.0
    if qtc_ms >= threshold:
        return "prolonged", f"QTc >= {threshold:g} ms: prolonged."
    return "normal", f"QTc below the {threshold:g} ms prolongation threshold."


def _qtc_tool(
    qt_ms: float,
    heart_rate_bpm: float | None = None,
    rr_interval_ms: float | None = None,
    method: Literal["bazett", "fridericia"] = "bazett",
    sex: Literal["female", "male"] | None = None,
) -> dict[str, Any]:
    """Heart-rate-corrected QT interval (QTc, ms) from QT (ms) and heart rate (bpm) or RR (ms).

    RR (s) = 60 / heart rate, or rr_interval_ms / 1000.
    method='bazett' (default): QTc = QT / RR^(1/2) (Bazett HC, Heart 1920;7:353-70).
    method='fridericia': QTc = QT / RR^(1/3) (Fridericia LS, Acta Med Scand 1920;53:469-86).
    Categories: <=390 short; >=450 (men) / >=460 (women) prolonged (Rautaharju PM et al.,
    Circulation 2009;119:e241-50); >500 markedly prolonged (Drew BJ et al., Circulation
    2010;121:1047-60).
    """
    if rr_interval_ms is not None:
        rr_seconds = rr_interval_ms / 1000.0
    elif heart_rate_bpm is not None:
        rr_seconds = 60.0 / heart_rate_bpm
    else:  # the schema forbids this; guard direct calls
        raise ToolException("give exactly one of heart_rate_bpm or rr_interval_ms.")
    if method == "fridericia":
        qtc_ms = qt_ms / rr_seconds ** (1.0 / 3.0)
        formula = "QTc = QT / RR^(1/3) (Fridericia), RR in seconds"
    else:
        qtc_ms = qt_ms / math.sqrt(rr_seconds)
        formula = "QTc = QT / RR^(1/2) (Bazett), RR in seconds"
    value = round(qtc_ms, 1)
    category, interpretation = _qtc_category(value, sex)
    return _result(
        "qtc",
        value,
        "ms",
        formula,
        _QTC_SOURCE,
        category=category,
        interpretation=interpretation,
        method=method,
        rr_interval_ms_used=round(rr_seconds * 1000.0, 1),
    )


# --------------------------------------------------------------------------------------------------
# Unit conversion
# --------------------------------------------------------------------------------------------------

_CONVERSION_SOURCE = (
    "Young DS. Implementation of SI units for clinical laboratory data. Ann Intern Med "
    "1987;106:114-29; inch and pound exact by the international yard and pound agreement, 1959."
)


@dataclass(frozen=True)
class _Analyte:
    """A convertible quantity: its units as factors onto one reference unit."""

    name: str
    reference_unit: str
    # Display unit -> multiply a value in that unit by this factor to get the reference unit.
    factors: dict[str, float]
    note: str


_ANALYTES: dict[str, _Analyte] = {
    analyte.name: analyte
    for analyte in (
        _Analyte(
            "glucose",
            "mmol/L",
            {"mmol/L": 1.0, "mg/dL": 10.0 / 180.156},
            "glucose molar mass 180.156 g/mol (1 mmol/L = 18.02 mg/dL)",
        ),
        _Analyte(
            "creatinine",
            "µmol/L",
            {"µmol/L": 1.0, "mg/dL": 88.4},
            "1 mg/dL creatinine = 88.4 µmol/L (molar mass 113.12 g/mol)",
        ),
        _Analyte(
            "cholesterol",
            "mmol/L",
            {"mmol/L": 1.0, "mg/dL": 10.0 / 386.65},
            "cholesterol molar mass 386.65 g/mol (1 mmol/L = 38.67 mg/dL); total, LDL or HDL",
        ),
        _Analyte(
            "triglycerides",
            "mmol/L",
            {"mmol/L": 1.0, "mg/dL": 10.0 / 885.7},
            "as triolein, molar mass 885.7 g/mol (1 mmol/L = 88.57 mg/dL)",
        ),
        _Analyte(
            "haemoglobin",
            "g/L",
            {"g/L": 1.0, "g/dL": 10.0},
            "1 g/dL = 10 g/L",
        ),
        _Analyte(
            "urea",
            "mmol/L",
            {"mmol/L": 1.0, "mg/dL": 10.0 / 60.06},
            "urea molar mass 60.06 g/mol (1 mmol/L = 6.006 mg/dL urea); for BUN use analyte 'bun'",
        ),
        _Analyte(
            "bun",
            "mmol/L",
            {"mmol/L": 1.0, "mg/dL": 10.0 / 28.014},
            "blood urea nitrogen: mg/dL of urea nitrogen; mmol/L is mmol/L of urea "
            "(2 N per urea, 28.014 g/mol; 1 mmol/L = 2.8014 mg/dL BUN)",
        ),
        _Analyte(
            "weight",
            "kg",
            {"kg": 1.0, "g": 0.001, "lb": 0.45359237},
            "1 lb = 0.45359237 kg exactly",
        ),
        _Analyte(
            "height",
            "cm",
            {"cm": 1.0, "m": 100.0, "in": 2.54},
            "1 in = 2.54 cm exactly",
        ),
        _Analyte(
            "temperature",
            "°C",
            {"°C": 1.0, "°F": 1.0},  # affine; handled separately
            "°F = °C × 9/5 + 32",
        ),
    )
}

_ANALYTE_ALIASES: dict[str, str] = {
    "glucose": "glucose",
    "bloodglucose": "glucose",
    "creatinine": "creatinine",
    "serumcreatinine": "creatinine",
    "cholesterol": "cholesterol",
    "totalcholesterol": "cholesterol",
    "ldl": "cholesterol",
    "ldlcholesterol": "cholesterol",
    "hdl": "cholesterol",
    "hdlcholesterol": "cholesterol",
    "triglycerides": "triglycerides",
    "triglyceride": "triglycerides",
    "tg": "triglycerides",
    "haemoglobin": "haemoglobin",
    "hemoglobin": "haemoglobin",
    "hb": "haemoglobin",
    "hgb": "haemoglobin",
    "urea": "urea",
    "bun": "bun",
    "bloodureanitrogen": "bun",
    "ureanitrogen": "bun",
    "weight": "weight",
    "bodyweight": "weight",
    "mass": "weight",
    "height": "height",
    "length": "height",
    "temperature": "temperature",
    "temp": "temperature",
    "bodytemperature": "temperature",
}

_UNIT_ALIASES: dict[str, str] = {
    "mg/dl": "mg/dL",
    "mmol/l": "mmol/L",
    "umol/l": "µmol/L",
    "micromol/l": "µmol/L",
    "g/dl": "g/dL",
    "g/l": "g/L",
    "kg": "kg",
    "kilogram": "kg",
    "kilograms": "kg",
    "g": "g",
    "gram": "g",
    "grams": "g",
    "lb": "lb",
    "lbs": "lb",
    "pound": "lb",
    "pounds": "lb",
    "cm": "cm",
    "centimetre": "cm",
    "centimetres": "cm",
    "centimeter": "cm",
    "centimeters": "cm",
    "m": "m",
    "metre": "m",
    "metres": "m",
    "meter": "m",
    "meters": "m",
    "in": "in",
    "inch": "in",
    "inches": "in",
    '"': "in",
    "c": "°C",
    "°c": "°C",
    "degc": "°C",
    "celsius": "°C",
    "f": "°F",
    "°f": "°F",
    "degf": "°F",
    "fahrenheit": "°F",
}


def _canonical_key(text: str) -> str:
    """Lower-case, drop spaces/underscores/hyphens, and unify micro signs (µ, μ -> u)."""
    key = text.strip().lower().replace("µ", "u").replace("μ", "u")
    for removable in (" ", "_", "-", "º"):
        key = key.replace(removable, "")
    return key


def _supported_conversions() -> str:
    """Human-readable list of every analyte and its units, for error messages and the docs."""
    return "; ".join(
        f"{name}: {' <-> '.join(analyte.factors)}" for name, analyte in _ANALYTES.items()
    )


def _resolve_unit(role: str, given: str, analyte: _Analyte) -> str:
    """Canonical spelling of a unit the analyte supports, or a ToolException listing them."""
    unit = _UNIT_ALIASES.get(_canonical_key(given))
    if unit is None or unit not in analyte.factors:
        raise ToolException(
            f"{role}={given!r} is not a supported unit for {analyte.name}; use one of "
            f"{', '.join(analyte.factors)}. All supported conversions: {_supported_conversions()}."
        )
    return unit


class ConvertUnitsArgs(_CalculatorArgs):
    """Arguments of the ``convert_units`` tool."""

    analyte: str = Field(
        description=(
            "What is measured: glucose, creatinine, cholesterol, triglycerides, haemoglobin, "
            "urea, bun, weight, height or temperature."
        )
    )
    value: float = Field(allow_inf_nan=False, description="The number to convert.")
    from_unit: str = Field(description="Unit of `value`, e.g. 'mg/dL', 'mmol/L', 'µmol/L', 'lb'.")
    to_unit: str = Field(description="Unit to convert to.")


def _convert_units_tool(analyte: str, value: float, from_unit: str, to_unit: str) -> dict[str, Any]:
    """Convert a lab value or body measurement between conventional and SI units.

    Supported: glucose mg/dL <-> mmol/L; creatinine mg/dL <-> µmol/L; cholesterol (total/LDL/HDL)
    mg/dL <-> mmol/L; triglycerides mg/dL <-> mmol/L; haemoglobin g/dL <-> g/L; urea mg/dL <->
    mmol/L; bun (blood urea nitrogen) mg/dL <-> mmol/L urea; temperature °C <-> °F; weight
    kg <-> lb (<-> g); height cm <-> in (<-> m). Factors from molar masses as tabulated by
    Young DS, Ann Intern Med 1987;106:114-29; inch and pound exact by the 1959 international
    agreement.
    """
    analyte_name = _ANALYTE_ALIASES.get(_canonical_key(analyte))
    if analyte_name is None:
        raise ToolException(
            f"Unknown analyte {analyte!r}. Supported analytes and units: "
            f"{_supported_conversions()}."
        )
    spec = _ANALYTES[analyte_name]
    source_unit = _resolve_unit("from_unit", from_unit, spec)
    target_unit = _resolve_unit("to_unit", to_unit, spec)

    if analyte_name == "temperature":
        celsius = (value - 32.0) * 5.0 / 9.0 if source_unit == "°F" else value
        if celsius < -273.15:
            raise ToolException(f"value={value:g} {source_unit} is below absolute zero.")
        converted = celsius * 9.0 / 5.0 + 32.0 if target_unit == "°F" else celsius
        formula = "°F = °C × 9/5 + 32; °C = (°F - 32) × 5/9"
    else:
        if value < 0:
            raise ToolException(
                f"value={value:g} {source_unit}: a {analyte_name} cannot be negative."
            )
        factor = spec.factors[source_unit] / spec.factors[target_unit]
        converted = value * factor
        formula = f"{target_unit} = {source_unit} × {factor:.6g}; {spec.note}"
    return _result(
        "convert_units",
        round(converted, 4),
        target_unit,
        formula,
        _CONVERSION_SOURCE,
        analyte=analyte_name,
        input=f"{value:g} {source_unit}",
    )


# --------------------------------------------------------------------------------------------------
# The tools
# --------------------------------------------------------------------------------------------------

bmi: BaseTool = _make_tool("bmi", _bmi_tool, BMIArgs)
bsa: BaseTool = _make_tool("bsa", _bsa_tool, BSAArgs)
egfr_ckd_epi_2021: BaseTool = _make_tool("egfr_ckd_epi_2021", _egfr_ckd_epi_2021_tool, EGFRArgs)
cockcroft_gault: BaseTool = _make_tool("cockcroft_gault", _cockcroft_gault_tool, CockcroftGaultArgs)
cha2ds2_vasc: BaseTool = _make_tool("cha2ds2_vasc", _cha2ds2_vasc_tool, CHA2DS2VAScArgs)
has_bled: BaseTool = _make_tool("has_bled", _has_bled_tool, HASBLEDArgs)
curb_65: BaseTool = _make_tool("curb_65", _curb_65_tool, CURB65Args)
wells_pe: BaseTool = _make_tool("wells_pe", _wells_pe_tool, WellsPEArgs)
qtc: BaseTool = _make_tool("qtc", _qtc_tool, QTcArgs)
convert_units: BaseTool = _make_tool("convert_units", _convert_units_tool, ConvertUnitsArgs)

CALCULATOR_TOOLS: list[BaseTool] = [
    bmi,
    bsa,
    egfr_ckd_epi_2021,
    cockcroft_gault,
    cha2ds2_vasc,
    has_bled,
    curb_65,
    wells_pe,
    qtc,
    convert_units,
]
"""Every clinical calculator, ready for ``bind_tools`` / ``ToolNode``."""
