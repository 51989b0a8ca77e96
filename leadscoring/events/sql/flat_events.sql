-- A flat activity log (marketing automation export: lead or visitor id, time, activity type,
-- optional value columns), as the flat event relation every feature reads. Without a session
-- column, a visitor's active day counts as one session.
SELECT
  CAST(e.{{ key | ident }} AS VARCHAR) AS visitor,
  CAST(e.{{ time | ident }} AS TIMESTAMP) AS ts,
  CAST(e.{{ type | ident }} AS VARCHAR) AS event_name,
  {% if session %}CAST(e.{{ session | ident }} AS VARCHAR){% else %}CAST(CAST(CAST(e.{{ time | ident }} AS TIMESTAMP) AS DATE) AS VARCHAR){% endif %}
    AS session_id,
  CAST(NULL AS DOUBLE) AS engagement_ms,
  {% if source_column %}CAST(e.{{ source_column | ident }} AS VARCHAR){% else %}CAST(NULL AS VARCHAR){% endif %} AS source,
  {% if page %}CAST(e.{{ page | ident }} AS VARCHAR){% else %}CAST(NULL AS VARCHAR){% endif %} AS page
{%- for param in params %},
  TRY_CAST(e.{{ param | ident }} AS DOUBLE) AS {{ ("value_" ~ param) | ident }}
{%- endfor %}
FROM {{ source }} AS e
{%- if where %}
WHERE {{ where }}
{%- endif %}
