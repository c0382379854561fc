-- Arrival delays per carrier and month, with the carrier's name from the reference domain.
select
    flights.carrier,
    airlines.name as carrier_name,
    flights.month,
    count(*) as flights,
    avg(flights.arr_delay) as mean_arr_delay_min,
    avg(case when flights.arr_delay is null then null when flights.arr_delay > 15 then 1e0 else 0e0 end) as delayed_share
from {{ source('operations', 'flights') }} as flights
left join {{ source('reference', 'airlines') }} as airlines
    on airlines.carrier = flights.carrier
group by flights.carrier, airlines.name, flights.month
