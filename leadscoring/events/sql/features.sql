-- Behavioural features per lead, point in time: only events strictly before each lead's
-- cut-off reach a feature. `leads` holds (lead_row, visitor, cutoff); `events` is the flat
-- event relation (ga4_events.sql or flat_events.sql): a name, or a subquery in parentheses.
-- One macro per feature kind. Text values go through `bind` (query parameters in DuckDB),
-- names through `ident` (quoted identifiers).
{%- macro cond(f) -%}
ev.ts IS NOT NULL
{%- if f.event %} AND ev.event_name = {{ bind(f.event) }}{% endif %}
{%- if f.page_contains %} AND strpos(ev.page, {{ bind(f.page_contains) }}) > 0{% endif %}
{%- if f.days %} AND date_diff('second', ev.ts, l.cutoff) <= {{ f.days * 86400 }}{% endif %}
{%- endmacro -%}
{%- macro distinct(expr) -%}
{#- the number of distinct non-null values; in DuckDB a list aggregate (one pass, no extra join) -#}
{%- if portable %}COUNT(DISTINCT {{ expr }}){% else %}len(list_distinct(list({{ expr }}))){% endif -%}
{%- endmacro -%}
{%- macro zero(expr) -%}
{%- if zero_without_events %}COALESCE({{ expr }}, 0){% else %}CASE WHEN COUNT(ev.ts) = 0 THEN NULL ELSE {{ expr }} END{% endif -%}
{%- endmacro -%}
{%- macro feature(f) -%}
{%- if f.kind == "count" -%}
{{ zero("COUNT(CASE WHEN " ~ cond(f) ~ " THEN 1 END)") }}
{%- elif f.kind == "sessions" -%}
{{ zero(distinct("CASE WHEN " ~ cond(f) ~ " THEN ev.session_id END")) }}
{%- elif f.kind == "active_days" -%}
{{ zero(distinct("CASE WHEN " ~ cond(f) ~ " THEN CAST(ev.ts AS DATE) END")) }}
{%- elif f.kind == "days_since_first" -%}
date_diff('second', MIN(CASE WHEN {{ cond(f) }} THEN ev.ts END), l.cutoff) / 86400.0
{%- elif f.kind == "days_since_last" -%}
date_diff('second', MAX(CASE WHEN {{ cond(f) }} THEN ev.ts END), l.cutoff) / 86400.0
{%- elif f.kind == "engagement_seconds" -%}
{{ zero("SUM(CASE WHEN " ~ cond(f) ~ " THEN ev.engagement_ms END) / 1000.0") }}
{%- elif f.kind == "sum" -%}
{{ zero("SUM(CASE WHEN " ~ cond(f) ~ " THEN ev." ~ ("value_" ~ f.param) | ident ~ " END)") }}
{%- elif f.kind in ("avg", "max") -%}
{{ f.kind | upper }}(CASE WHEN {{ cond(f) }} THEN ev.{{ ("value_" ~ f.param) | ident }} END)
{%- elif f.kind == "time_between" -%}
CASE WHEN MIN(CASE WHEN {{ cond(f) }} AND ev.event_name = {{ bind(f.to_event) }} THEN ev.ts END)
          >= MIN(CASE WHEN {{ cond(f) }} AND ev.event_name = {{ bind(f.from_event) }} THEN ev.ts END)
     THEN date_diff('second', MIN(CASE WHEN {{ cond(f) }} AND ev.event_name = {{ bind(f.from_event) }} THEN ev.ts END),
                    MIN(CASE WHEN {{ cond(f) }} AND ev.event_name = {{ bind(f.to_event) }} THEN ev.ts END)) END
{%- elif f.kind == "share" -%}
AVG(CASE WHEN {{ cond(f) }} THEN CASE WHEN ev.source IS NULL THEN NULL WHEN ev.source = {{ bind(f.source) }} THEN 1.0 ELSE 0.0 END END)
{%- elif f.kind == "decayed" -%}
{{ zero("SUM(CASE WHEN " ~ cond(f) ~ " THEN power(0.5, date_diff('second', ev.ts, l.cutoff) / 86400.0 / " ~ f.half_life_days ~ ") END)") }}
{%- endif -%}
{%- endmacro %}
SELECT
  l.lead_row
{%- for f in features %},
  {{ feature(f) }} AS {{ f.name | ident }}
{%- endfor %}
FROM {{ leads }} AS l
LEFT JOIN {{ events }} AS ev
  ON ev.visitor = l.visitor AND ev.ts < l.cutoff
GROUP BY l.lead_row, l.cutoff
ORDER BY l.lead_row
