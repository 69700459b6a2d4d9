"""Person records drawn by indexing Faker-built pools with numpy arrays.

Faker is far too slow to call per row (tens of microseconds a name), so each locale gets
pools built once per process with a fixed Faker seed (a few thousand first names per sex,
last names, city/state/zipcode triples, email domains); a batch then only draws integer
indices and gathers with ``pyarrow.Array.take``. Emails and (en_US) phone numbers are
composed with ``pyarrow.compute`` from the chosen pieces, so no Python code runs per row.
A name with no ASCII form (ja_JP, zh_CN, ar_AA, hi_IN...) gives no email local part, so those
rows get a random lower-case alphanumeric one (``k3v9q2xa@example.org``), drawn in one call.

The pools depend on the Faker version: upgrading Faker may change the names drawn.

Ages follow a rough population shape within ``age_range`` (flat to 60, then thinning out).

The fields the reference tool's users expect come after gristmill's original ten
(``config.sampler_params.PERSON_FIELDS``) and are drawn from a child stream
(``rng.spawn``), so the original fields keep the values they always had: uuid, locale,
street_number / street_name / street_address (one pool entry, so the three agree; the address
follows the locale's Faker format), postcode (the zipcode again), country (the locale's),
marital_status, education_level and bachelors_field (the reference tool's values, uniform, but a
minor is never married and has at most secondary education) and occupation (Faker's jobs).

Output: a ``pyarrow.StructArray`` with fields first_name, last_name, sex, age (int64),
birth_date (date32), city, state, zipcode, email_address, phone_number, then the fields above,
all strings. Parquet stores it as a struct column; ``to_pylist()`` gives dicts, so templates can
read ``{{ person.first_name }}``.
"""

from __future__ import annotations

import functools
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from gristmill.config.samplers import PERSON_FIELDS, PersonParams
from gristmill.sampling.ids import hex_ids

NAME_POOL_SIZE = 3000
PLACE_POOL_SIZE = 2000
PHONE_POOL_SIZE = 5000
DOMAIN_POOL_SIZE = 200
STREET_POOL_SIZE = 2000
JOB_POOL_SIZE = 1000
_POOL_SEED = 1_000_003  # fixed: pools must be identical in every process
_SEXES = pa.array(["Male", "Female"])
_STATE_METHODS = ("state", "administrative_unit", "region", "prefecture", "province")

# The reference tool's values, so its users' templates and filters keep working.
MARITAL_STATUSES = pa.array(["married_present", "divorced", "never_married", "separated", "widowed"])
EDUCATION_LEVELS = pa.array(["secondary_education", "some_college", "bachelors", "associates", "graduate",
                             "doctorate"])
BACHELORS_FIELDS = pa.array(["stem", "business", "education", "arts_humanities", "stem_related"])
_COLLEGE_LEVELS = np.array([False, False, True, False, True, True])  # parallel to EDUCATION_LEVELS
ADULT_AGE = 18


@dataclass(frozen=True)
class PersonPools:
    """Per-locale value pools; arrays of the same group are parallel (index i is one record)."""

    first_names: pa.StringArray  # male names, then female names
    first_name_keys: pa.StringArray  # ASCII lower-case forms, for email addresses ('' if none)
    num_male: int
    last_names: pa.StringArray
    last_name_keys: pa.StringArray
    first_key_missing: np.ndarray  # bool per first name: no ASCII form, so no email local part
    last_key_missing: np.ndarray
    cities: pa.StringArray
    states: pa.StringArray
    zipcodes: pa.StringArray
    email_domains: pa.StringArray
    phones: pa.StringArray | None  # None: compose North American numbers instead
    street_numbers: pa.StringArray  # these three are parallel: index i is one street address
    street_names: pa.StringArray
    street_addresses: pa.StringArray
    occupations: pa.StringArray
    country: str


def email_key(name: str) -> str:
    """ASCII lower-case letters and digits of a name ('Zoë O'Neil' -> 'zoeoneil'); '' if none ('遠藤')."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return "".join(ch for ch in ascii_name.lower() if ch.isalnum())


def _repeat(make: Callable[[], str], count: int) -> list[str]:
    return [make() for _ in range(count)]


def _state_maker(fake: Any, locale: str) -> Callable[[], str]:
    if locale == "en_US":
        return lambda: fake.state_abbr(include_territories=False, include_freely_associated_states=False)
    for method in _STATE_METHODS:
        if hasattr(fake, method):
            return getattr(fake, method)  # type: ignore[no-any-return]
    return lambda: ""


def _places(fake: Any, locale: str) -> tuple[list[str], list[str], list[str]]:
    make_state = _state_maker(fake, locale)
    cities, states, zipcodes = [], [], []
    for _ in range(PLACE_POOL_SIZE):
        state = make_state()
        cities.append(fake.city())
        states.append(state)
        # en_US zipcodes match their state; other locales' postcodes are drawn independently.
        zipcodes.append(fake.zipcode_in_state(state) if locale == "en_US" else fake.postcode())
    return cities, states, zipcodes


def _address_format(fake: Any) -> str:
    """The locale's street address format that has the number and the street and nothing else."""
    for provider in fake.providers:
        for pattern in getattr(provider, "street_address_formats", ()):
            rest = pattern.replace("{{building_number}}", "").replace("{{street_name}}", "")
            if "{{building_number}}" in pattern and "{{street_name}}" in pattern and "{{" not in rest:
                return str(pattern)
    return "{{building_number}} {{street_name}}"


def _streets(fake: Any) -> tuple[list[str], list[str], list[str]]:
    pattern = _address_format(fake)
    numbers, names = _repeat(fake.building_number, STREET_POOL_SIZE), _repeat(fake.street_name, STREET_POOL_SIZE)
    addresses = [pattern.replace("{{building_number}}", number).replace("{{street_name}}", name)
                 for number, name in zip(numbers, names, strict=True)]
    return numbers, names, addresses


def _country(fake: Any) -> str:
    try:
        return str(fake.current_country())
    except (ValueError, AttributeError):  # a locale without a country (e.g. 'la')
        return ""


def _jobs(fake: Any) -> list[str]:
    job = getattr(fake, "job", None)
    return sorted(set(_repeat(job, JOB_POOL_SIZE))) if job is not None else [""]


@functools.lru_cache(maxsize=16)
def person_pools(locale: str) -> PersonPools:
    """The pools of one locale, built on first use (about a second) and kept for the process."""
    from faker import Faker

    fake = Faker(locale)
    fake.seed_instance(_POOL_SEED)
    male = _repeat(fake.first_name_male, NAME_POOL_SIZE)
    female = _repeat(fake.first_name_female, NAME_POOL_SIZE)
    last = _repeat(fake.last_name, NAME_POOL_SIZE)
    cities, states, zipcodes = _places(fake, locale)
    domains = sorted(set(_repeat(fake.free_email_domain, DOMAIN_POOL_SIZE)))
    phones = None if locale == "en_US" else pa.array(_repeat(fake.phone_number, PHONE_POOL_SIZE))
    # Built after the original pools from the same Faker stream, so those stay as they were.
    numbers, names, addresses = _streets(fake)
    first = male + female
    first_keys, last_keys = [email_key(n) for n in first], [email_key(n) for n in last]
    return PersonPools(
        first_names=pa.array(first), first_name_keys=pa.array(first_keys),
        num_male=len(male), last_names=pa.array(last), last_name_keys=pa.array(last_keys),
        first_key_missing=np.array([not key for key in first_keys]),
        last_key_missing=np.array([not key for key in last_keys]),
        cities=pa.array(cities), states=pa.array(states), zipcodes=pa.array(zipcodes),
        email_domains=pa.array(domains), phones=phones,
        street_numbers=pa.array(numbers), street_names=pa.array(names), street_addresses=pa.array(addresses),
        occupations=pa.array(_jobs(fake)), country=_country(fake),
    )


def _indices(rng: np.random.Generator, size: int, n: int) -> pa.Array:
    return pa.array(rng.integers(0, size, size=n, dtype=np.int64))


@functools.lru_cache(maxsize=64)
def _age_weights(low: int, high: int) -> np.ndarray:
    # A rough population shape: flat up to 60, then thinning out, so 110-year-olds stay rare.
    ages = np.arange(low, high + 1, dtype=np.float64)
    weights = np.exp(-np.maximum(ages - 60.0, 0.0) / 12.0)
    return np.asarray(weights / weights.sum())


def _ages(low: int, high: int, n: int, rng: np.random.Generator) -> np.ndarray:
    return low + rng.choice(high - low + 1, size=n, p=_age_weights(low, high)).astype(np.int64)


def _birth_dates(ages: np.ndarray, reference_date: str, rng: np.random.Generator) -> np.ndarray:
    # The last birthday fell within the year before the reference date; the birth date is that
    # birthday moved back by the age in years, so age and birth date always agree.
    last_birthday = np.datetime64(reference_date, "D") - rng.integers(0, 365, size=len(ages))
    year = last_birthday.astype("datetime64[Y]")
    day_of_year = last_birthday - year.astype("datetime64[D]")
    return np.asarray((year - ages).astype("datetime64[D]") + day_of_year)


def _emails(first_keys: pa.Array, last_keys: pa.Array, domains: pa.Array,
            rng: np.random.Generator) -> pa.Array:
    n = len(first_keys)
    numbers = pc.cast(pa.array(rng.integers(1, 100, size=n)), pa.string())
    suffix = pc.if_else(pa.array(rng.random(n) < 0.5), numbers, "")
    return pc.binary_join_element_wise(first_keys, ".", last_keys, suffix, "@", domains, "")


_LOCAL_PART_CHARS = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz0123456789", dtype=np.uint8)
LOCAL_PART_LENGTH = 8  # 36**8 = 2.8e12 local parts: about one repeat in 500 batches of 100k rows


def _random_local_parts(n: int, rng: np.random.Generator) -> pa.Array:
    """``n`` random local parts: a letter, then letters and digits (one draw, no per-row Python)."""
    codes = rng.integers(0, len(_LOCAL_PART_CHARS), size=(n, LOCAL_PART_LENGTH), dtype=np.uint8)
    codes[:, 0] %= 26  # start with a letter
    text = np.ascontiguousarray(_LOCAL_PART_CHARS[codes]).view(f"S{LOCAL_PART_LENGTH}").ravel()
    return pa.array(text.astype(f"U{LOCAL_PART_LENGTH}"))


def _without_ascii_names(emails: pa.Array, no_key: np.ndarray, domains: pa.Array,
                         rng: np.random.Generator) -> pa.Array:
    """Emails of rows whose name has no ASCII form replaced by ``<random>@<domain>``."""
    if not no_key.any():
        return emails
    local = _random_local_parts(len(emails), rng)
    return pc.if_else(pa.array(no_key), pc.binary_join_element_wise(local, domains, "@"), emails)


def _north_american_phones(n: int, rng: np.random.Generator) -> pa.Array:
    def digits(low: int, high: int, width: int) -> pa.Array:
        text = pc.cast(pa.array(rng.integers(low, high, size=n)), pa.string())
        return pc.utf8_lpad(text, width=width, padding="0")

    area, exchange, line = digits(201, 990, 3), digits(200, 1000, 3), digits(0, 10000, 4)
    return pc.binary_join_element_wise("(", area, ") ", exchange, "-", line, "")


def _first_name_indices(params: PersonParams, pools: PersonPools, n: int,
                        rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(is_male, index into first_names) per row."""
    if params.sex is None:
        is_male = rng.random(n) < 0.5
    else:
        is_male = np.full(n, params.sex == "Male")
    num_female = len(pools.first_names) - pools.num_male
    u = rng.random(n)
    male_index = (u * pools.num_male).astype(np.int64)
    female_index = pools.num_male + (u * num_female).astype(np.int64)
    return is_male, np.where(is_male, male_index, female_index)


def draw_person(params: PersonParams, n: int, rng: np.random.Generator,
                inputs: Mapping[str, Any]) -> pa.StructArray:
    """``n`` person records as a struct array (fields in ``PERSON_FIELDS``)."""
    pools = person_pools(params.locale)
    is_male, first_index = _first_name_indices(params, pools, n, rng)
    first = pa.array(first_index)
    last = _indices(rng, len(pools.last_names), n)
    place = _indices(rng, len(pools.cities), n)
    if params.city is None:
        cities = pools.cities.take(place)
    else:
        wanted = pa.array([params.city] if isinstance(params.city, str) else params.city)
        cities = wanted.take(_indices(rng, len(wanted), n))
    ages = _ages(params.age_range[0], params.age_range[1], n, rng)
    domains = pools.email_domains.take(_indices(rng, len(pools.email_domains), n))
    emails = _emails(pools.first_name_keys.take(first), pools.last_name_keys.take(last), domains, rng)
    if pools.phones is None:
        phones = _north_american_phones(n, rng)
    else:
        phones = pools.phones.take(_indices(rng, len(pools.phones), n))
    fields = [
        pools.first_names.take(first), pools.last_names.take(last),
        _SEXES.take(pa.array((~is_male).astype(np.int64))), pa.array(ages),
        pa.array(_birth_dates(ages, params.reference_date, rng), type=pa.date32()),
        cities, pools.states.take(place), pools.zipcodes.take(place), emails, phones,
    ]
    # Drawn last and only when a name lacks an ASCII form, so Latin-script locales draw exactly
    # what they always did, and the other fields of every locale stay as they were.
    no_key = pools.first_key_missing[first_index] | pools.last_key_missing[last.to_numpy()]
    fields[8] = _without_ascii_names(emails, no_key, domains, rng)
    fields += _reference_fields(params.locale, pools, ages, zipcodes=fields[7], rng=rng.spawn(1)[0])
    return pa.StructArray.from_arrays(fields, names=list(PERSON_FIELDS))


def _reference_fields(locale: str, pools: PersonPools, ages: np.ndarray, *, zipcodes: pa.Array,
                      rng: np.random.Generator) -> list[pa.Array]:
    """uuid ... occupation (``PERSON_FIELDS[10:]``), drawn from their own stream."""
    n = len(ages)
    street = _indices(rng, len(pools.street_numbers), n)
    adult = ages >= ADULT_AGE
    marital = np.where(adult, rng.integers(0, len(MARITAL_STATUSES), size=n), 2)  # 2: never_married
    education = np.where(adult, rng.integers(0, len(EDUCATION_LEVELS), size=n), 0)  # 0: secondary
    bachelors = pc.if_else(pa.array(_COLLEGE_LEVELS[education]),
                           BACHELORS_FIELDS.take(_indices(rng, len(BACHELORS_FIELDS), n)), "no_degree")
    return [
        pa.array(hex_ids(rng, n), type=pa.string()), pa.repeat(pa.scalar(locale), n),
        pools.street_numbers.take(street), pools.street_names.take(street), pools.street_addresses.take(street),
        zipcodes, pa.repeat(pa.scalar(pools.country), n),
        MARITAL_STATUSES.take(pa.array(marital)), EDUCATION_LEVELS.take(pa.array(education)), bachelors,
        pools.occupations.take(_indices(rng, len(pools.occupations), n)),
    ]
