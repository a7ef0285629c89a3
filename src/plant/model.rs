//! The process model: a fired heater feeding a crude distillation unit.
//!
//! Pure and deterministic: `Plant::new(seed)` followed by the same `step`s
//! gives bit-identical outputs. No I/O, no clock: the simulated time starts
//! on a Monday at 06:00 (a shift change) and only advances in [`Plant::step`].
//!
//! Physics (simplified, but with the right signs, magnitudes and lags):
//! - **Feed** follows its setpoint through a 2-minute lag, scaled by a shift
//!   pattern (the night shift and weekends run a little slower).
//! - **Preheat**: crude arrives at ~235 °C from the exchanger train, a bit
//!   warmer on warm days, cooler for lighter crudes.
//! - **Heater**: a PI controller with feed-forward sets the fuel gas flow to
//!   hold the coil outlet temperature at its setpoint. Absorbed duty =
//!   fuel × LHV × efficiency; the outlet temperature follows the heat balance
//!   `m·(cp·ΔT + vaporised fraction·latent heat)` through a 3-minute lag.
//!   Efficiency drops slowly with fouling and with excess O₂ away from 3 %.
//! - **Column**: top pressure follows its setpoint; top temperature rises with
//!   pressure and heater outlet temperature and falls with reflux. Product
//!   yields shift with outlet temperature and crude lightness; naphtha 95 %
//!   point (the quality) rises with outlet temperature and pressure and falls
//!   with reflux. Above 180 °C the naphtha is off-spec.
//! - **States**: stopped → starting → running; random trips (flame failure,
//!   low flow, high tube temperature) put the unit in fault until it is reset
//!   (automatically after a repair time, so the demo keeps running).
//! - **Upsets**: crude switches every ~8 h change lightness over ~30 min.

use super::rng::Rng;

/// Seconds from the simulated epoch (Monday 00:00) to the start.
pub const START_OFFSET_S: f64 = 6.0 * 3600.0;
const DAY: f64 = 86_400.0;
/// Lower heating value of the fuel gas, kJ/kg.
const LHV: f64 = 47_000.0;
const CP: f64 = 2.6; // kJ/(kg·K), crude liquid
const LATENT: f64 = 250.0; // kJ/kg vaporised
/// Naphtha 95 % point spec limit, °C.
pub const T95_SPEC: f64 = 180.0;

/// Unit operating state, as the PLC reports it in `unit.state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnitState {
    Stopped = 0,
    Starting = 1,
    Running = 2,
    Fault = 3,
}

/// Operator setpoints (engineering units). Ranges: see [`Setpoints::limits`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Setpoints {
    /// Heater coil outlet temperature, °C.
    pub outlet_temp: f64,
    /// Crude feed rate, m³/h.
    pub feed_rate: f64,
    /// Column top pressure, barg.
    pub top_pressure: f64,
    /// Reflux ratio, –.
    pub reflux_ratio: f64,
}

impl Default for Setpoints {
    fn default() -> Self {
        Self {
            outlet_temp: 360.0,
            feed_rate: 500.0,
            top_pressure: 1.5,
            reflux_ratio: 2.2,
        }
    }
}

/// Which setpoint, for writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetpointId {
    OutletTemp,
    FeedRate,
    TopPressure,
    RefluxRatio,
}

impl SetpointId {
    /// Allowed range (min, max) in engineering units.
    pub fn limits(self) -> (f64, f64) {
        match self {
            SetpointId::OutletTemp => (330.0, 385.0),
            SetpointId::FeedRate => (250.0, 700.0),
            SetpointId::TopPressure => (0.8, 2.5),
            SetpointId::RefluxRatio => (1.0, 4.0),
        }
    }
}

/// Everything the plant's instruments show at one instant.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// Simulated seconds since start.
    pub t: f64,
    pub sp: Setpoints,
    pub run_cmd: bool,
    pub state: UnitState,
    pub fault_code: u16,
    pub ambient_temp: f64,
    pub feed_rate: f64,
    pub inlet_temp: f64,
    pub outlet_temp: f64,
    pub fuel_gas_flow: f64,
    pub duty_mw: f64,
    pub efficiency: f64,
    pub excess_o2: f64,
    pub flue_gas_temp: f64,
    pub top_pressure: f64,
    pub top_temp: f64,
    pub bottom_temp: f64,
    pub naphtha_flow: f64,
    pub kerosene_flow: f64,
    pub diesel_flow: f64,
    pub residue_flow: f64,
    pub naphtha_t95: f64,
    pub power_kw: f64,
    /// Totals since start (never reset; registers wrap as PLC counters do).
    pub energy_mwh: f64,
    pub product_m3: f64,
    pub offspec_m3: f64,
    pub run_hours: f64,
    pub fuel_kg: f64,
    pub trips: u32,
}

impl Snapshot {
    pub fn alarm_high_temp(&self) -> bool {
        self.outlet_temp > 390.0
    }
    pub fn alarm_low_o2(&self) -> bool {
        self.state == UnitState::Running && self.excess_o2 < 1.5
    }
    pub fn offspec(&self) -> bool {
        self.state == UnitState::Running && self.naphtha_t95 > T95_SPEC
    }
    /// Status word bits: 0 running, 1 fault, 2 high temp, 3 low O₂, 4 off-spec, 5 run command.
    pub fn status_word(&self) -> u16 {
        u16::from(self.state == UnitState::Running)
            | u16::from(self.state == UnitState::Fault) << 1
            | u16::from(self.alarm_high_temp()) << 2
            | u16::from(self.alarm_low_o2()) << 3
            | u16::from(self.offspec()) << 4
            | u16::from(self.run_cmd) << 5
    }
}

/// The simulated unit.
#[derive(Debug, Clone)]
pub struct Plant {
    rng: Rng,
    s: Snapshot,
    state_timer: f64,
    repair_time: f64,
    fuel_valve: f64,
    pi_integral: f64,
    fouling: f64,
    crude_light: f64,
    crude_target: f64,
    o2_dev: f64,
    ambient_dev: f64,
    fault_reset: bool,
    naphtha_yield: f64,
    kerosene_yield: f64,
    diesel_yield: f64,
}

fn lag(x: f64, target: f64, tau: f64, dt: f64) -> f64 {
    x + (target - x) * (1.0 - (-dt / tau).exp())
}

impl Plant {
    /// A unit running at steady state at its default setpoints.
    pub fn new(seed: u64) -> Self {
        let sp = Setpoints::default();
        let mut p = Self {
            rng: Rng::new(seed),
            s: Snapshot {
                t: 0.0,
                sp,
                run_cmd: true,
                state: UnitState::Running,
                fault_code: 0,
                ambient_temp: 12.0,
                feed_rate: sp.feed_rate,
                inlet_temp: 235.0,
                outlet_temp: sp.outlet_temp,
                fuel_gas_flow: 0.0,
                duty_mw: 0.0,
                efficiency: 0.9,
                excess_o2: 3.0,
                flue_gas_temp: 380.0,
                top_pressure: sp.top_pressure,
                top_temp: 110.0,
                bottom_temp: 345.0,
                naphtha_flow: 0.0,
                kerosene_flow: 0.0,
                diesel_flow: 0.0,
                residue_flow: 0.0,
                naphtha_t95: 172.0,
                power_kw: 0.0,
                energy_mwh: 0.0,
                product_m3: 0.0,
                offspec_m3: 0.0,
                run_hours: 0.0,
                fuel_kg: 0.0,
                trips: 0,
            },
            state_timer: 0.0,
            repair_time: 0.0,
            fuel_valve: 0.0,
            pi_integral: 0.0,
            fouling: 0.0,
            crude_light: 0.0,
            crude_target: 0.0,
            o2_dev: 0.0,
            ambient_dev: 0.0,
            fault_reset: false,
            naphtha_yield: 0.0,
            kerosene_yield: 0.0,
            diesel_yield: 0.0,
        };
        // Start from steady state: feed-forward fuel and settled products.
        let (ny, ky, dy) = p.yields();
        p.naphtha_yield = ny;
        p.kerosene_yield = ky;
        p.diesel_yield = dy;
        p.fuel_valve = p.feed_forward_fuel(sp.outlet_temp);
        p.s.fuel_gas_flow = p.fuel_valve;
        p.step(1.0);
        p.s.t = 0.0;
        p
    }

    pub fn snapshot(&self) -> &Snapshot {
        &self.s
    }

    /// Time of day in seconds (0 = midnight) of the simulated clock.
    pub fn time_of_day(&self) -> f64 {
        (START_OFFSET_S + self.s.t).rem_euclid(DAY)
    }

    /// Day of week, 0 = Monday.
    pub fn day_of_week(&self) -> u32 {
        (((START_OFFSET_S + self.s.t) / DAY).floor() as i64).rem_euclid(7) as u32
    }

    /// Throughput factor operators run at: night shift and weekends slower.
    fn shift_factor(&self) -> f64 {
        let h = self.time_of_day() / 3600.0;
        let shift = if (6.0..14.0).contains(&h) {
            1.0
        } else if (14.0..22.0).contains(&h) {
            0.98
        } else {
            0.94
        };
        shift * if self.day_of_week() >= 5 { 0.92 } else { 1.0 }
    }

    /// Set a setpoint; `Err` with the allowed range if out of range.
    pub fn set(&mut self, id: SetpointId, value: f64) -> Result<(), (f64, f64)> {
        let (lo, hi) = id.limits();
        if !(lo..=hi).contains(&value) {
            return Err((lo, hi));
        }
        match id {
            SetpointId::OutletTemp => self.s.sp.outlet_temp = value,
            SetpointId::FeedRate => self.s.sp.feed_rate = value,
            SetpointId::TopPressure => self.s.sp.top_pressure = value,
            SetpointId::RefluxRatio => self.s.sp.reflux_ratio = value,
        }
        Ok(())
    }

    pub fn set_run(&mut self, run: bool) {
        self.s.run_cmd = run;
    }

    /// Operator fault reset (a pulse; consumed by the next step).
    pub fn reset_fault(&mut self) {
        self.fault_reset = true;
    }

    /// Force a trip (for tests and demos of fault handling).
    pub fn trip(&mut self, code: u16) {
        self.enter_fault(code);
    }

    fn enter_fault(&mut self, code: u16) {
        if self.s.state != UnitState::Fault {
            self.s.state = UnitState::Fault;
            self.s.fault_code = code;
            self.s.trips += 1;
            self.state_timer = 0.0;
            // Repair takes 20 min to 2 h.
            self.repair_time = 1200.0 + 6000.0 * self.rng.uniform();
        }
    }

    fn density(&self) -> f64 {
        860.0 - 25.0 * self.crude_light
    }

    fn vapor_fraction(&self, t_out: f64) -> f64 {
        (0.3 + 0.012 * (t_out - 360.0) + 0.1 * self.crude_light).clamp(0.0, 0.8)
    }

    /// kW absorbed to heat the current feed from inlet to `t_out`.
    fn duty_needed(&self, t_out: f64) -> f64 {
        let m = self.s.feed_rate * self.density() / 3600.0;
        m * (CP * (t_out - self.s.inlet_temp) + self.vapor_fraction(t_out) * LATENT)
    }

    fn feed_forward_fuel(&self, t_out: f64) -> f64 {
        (self.duty_needed(t_out) / (LHV * self.s.efficiency.max(0.5)) * 3600.0).max(0.0)
    }

    fn yields(&self) -> (f64, f64, f64) {
        let dt = self.s.outlet_temp - 360.0;
        let l = self.crude_light;
        (
            (0.17 + 0.0015 * dt + 0.05 * l + 0.004 * (self.s.sp.reflux_ratio - 2.2))
                .clamp(0.05, 0.35),
            (0.14 + 0.0010 * dt + 0.02 * l).clamp(0.05, 0.25),
            (0.24 + 0.0020 * dt + 0.02 * l).clamp(0.1, 0.35),
        )
    }

    /// Advance by `dt` simulated seconds (any size; integrated in ≤1 s steps).
    pub fn step(&mut self, dt: f64) {
        let mut left = dt.max(0.0);
        while left > 0.0 {
            let h = left.min(1.0);
            self.substep(h);
            left -= h;
        }
    }

    fn substep(&mut self, dt: f64) {
        self.s.t += dt;
        self.state_timer += dt;
        let noise = |rng: &mut Rng, sd: f64| sd * rng.normal();

        // --- disturbances
        let tod = self.time_of_day();
        self.ambient_dev = lag(self.ambient_dev, noise(&mut self.rng, 3.0), 3600.0, dt);
        self.s.ambient_temp = 14.0
            + 7.0 * (2.0 * std::f64::consts::PI * (tod - 9.0 * 3600.0) / DAY).sin()
            + self.ambient_dev;
        if self.rng.event(1.0 / (8.0 * 3600.0), dt) {
            self.crude_target = 2.0 * self.rng.uniform() - 1.0;
        }
        self.crude_light = lag(self.crude_light, self.crude_target, 1800.0, dt);
        self.fouling += 0.02 / (30.0 * DAY) * dt;

        // --- state machine
        let run = self.s.run_cmd;
        match self.s.state {
            UnitState::Stopped if run => {
                self.s.state = UnitState::Starting;
                self.state_timer = 0.0;
            }
            UnitState::Starting if !run => {
                self.s.state = UnitState::Stopped;
                self.state_timer = 0.0;
            }
            UnitState::Starting
                if self.state_timer > 1800.0
                    && self.s.outlet_temp > self.s.sp.outlet_temp - 5.0 =>
            {
                self.s.state = UnitState::Running;
                self.state_timer = 0.0;
            }
            UnitState::Running if !run => {
                self.s.state = UnitState::Stopped;
                self.state_timer = 0.0;
            }
            UnitState::Running => {
                if self.s.outlet_temp > 398.0 {
                    self.enter_fault(201);
                } else if self.rng.event(1.0 / (4.0 * DAY), dt) {
                    let code = [101, 102, 201][(self.rng.uniform() * 3.0) as usize % 3];
                    self.enter_fault(code);
                }
            }
            UnitState::Fault
                if (self.fault_reset && self.state_timer > 60.0)
                    || self.state_timer > self.repair_time =>
            {
                self.s.state = UnitState::Stopped;
                self.s.fault_code = 0;
                self.state_timer = 0.0;
            }
            _ => {}
        }
        self.fault_reset = false;

        // --- feed
        let feed_target = match self.s.state {
            UnitState::Running => self.s.sp.feed_rate * self.shift_factor(),
            UnitState::Starting => 0.6 * self.s.sp.feed_rate * (self.state_timer / 900.0).min(1.0),
            UnitState::Stopped | UnitState::Fault => 0.0,
        };
        self.s.feed_rate = (lag(self.s.feed_rate, feed_target, 120.0, dt)
            + noise(&mut self.rng, 0.4) * dt.sqrt())
        .max(0.0);
        let flowing = self.s.feed_rate > 5.0;
        let preheat = 235.0 + 0.15 * (self.s.ambient_temp - 14.0) - 8.0 * self.crude_light;
        let inlet_target = if flowing {
            preheat
        } else {
            self.s.ambient_temp + 60.0
        };
        self.s.inlet_temp =
            lag(self.s.inlet_temp, inlet_target, 600.0, dt) + noise(&mut self.rng, 0.05);

        // --- combustion
        self.o2_dev = lag(self.o2_dev, noise(&mut self.rng, 0.8), 300.0, dt);
        self.s.excess_o2 = (3.0 + self.o2_dev).clamp(0.3, 8.0);
        self.s.efficiency =
            (0.905 - self.fouling - 0.004 * (self.s.excess_o2 - 3.0).powi(2)).clamp(0.6, 0.95);

        // --- heater outlet temperature control (PI + feed-forward on fuel)
        let firing = matches!(self.s.state, UnitState::Running | UnitState::Starting);
        let t_sp = if self.s.state == UnitState::Starting {
            self.s.sp.outlet_temp - 2.0 + (-(self.state_timer / 600.0)).exp() * -60.0
        } else {
            self.s.sp.outlet_temp
        };
        let valve_target = if firing {
            let err = t_sp - self.s.outlet_temp;
            self.pi_integral = (self.pi_integral + err * dt).clamp(-4000.0, 4000.0);
            (self.feed_forward_fuel(t_sp) + 40.0 * err + 0.4 * self.pi_integral).clamp(0.0, 9000.0)
        } else {
            self.pi_integral = 0.0;
            0.0
        };
        self.fuel_valve = lag(self.fuel_valve, valve_target, 10.0, dt);
        self.s.fuel_gas_flow = (self.fuel_valve * (1.0 + 0.005 * self.rng.normal())).max(0.0);
        let absorbed_kw = self.s.fuel_gas_flow / 3600.0 * LHV * self.s.efficiency;
        self.s.duty_mw = absorbed_kw / 1000.0;
        let m = self.s.feed_rate * self.density() / 3600.0;
        let t_eq = if m > 1.0 {
            // Solve m·(cp·(T − Tin) + vf(T)·L) = Q for T (vf is linear in T).
            let a = CP + 0.012 * LATENT;
            let b = absorbed_kw / m - (0.3 - 0.012 * 360.0 + 0.1 * self.crude_light) * LATENT
                + CP * self.s.inlet_temp;
            (b / a).min(self.s.inlet_temp + 400.0)
        } else {
            self.s.ambient_temp + absorbed_kw * 0.02
        };
        self.s.outlet_temp = lag(self.s.outlet_temp, t_eq, 180.0, dt) + noise(&mut self.rng, 0.05);
        self.s.flue_gas_temp = lag(
            self.s.flue_gas_temp,
            if firing {
                370.0 + 2000.0 * self.fouling + 0.4 * (self.s.outlet_temp - 360.0)
            } else {
                self.s.ambient_temp + 40.0
            },
            300.0,
            dt,
        );

        // --- column
        self.s.top_pressure = lag(self.s.top_pressure, self.s.sp.top_pressure, 60.0, dt)
            + noise(&mut self.rng, 0.002);
        let r = self.s.sp.reflux_ratio - 2.2;
        self.s.top_temp = lag(
            self.s.top_temp,
            110.0 + 20.0 * (self.s.top_pressure - 1.5) + 0.15 * (self.s.outlet_temp - 360.0)
                - 4.0 * r
                + 6.0 * self.crude_light,
            240.0,
            dt,
        ) + noise(&mut self.rng, 0.05);
        self.s.bottom_temp = lag(self.s.bottom_temp, self.s.outlet_temp - 15.0, 300.0, dt);
        let (ny, ky, dy) = self.yields();
        self.naphtha_yield = lag(self.naphtha_yield, ny, 300.0, dt);
        self.kerosene_yield = lag(self.kerosene_yield, ky, 300.0, dt);
        self.diesel_yield = lag(self.diesel_yield, dy, 300.0, dt);
        let f = self.s.feed_rate;
        self.s.naphtha_flow = f * self.naphtha_yield;
        self.s.kerosene_flow = f * self.kerosene_yield;
        self.s.diesel_flow = f * self.diesel_yield;
        self.s.residue_flow =
            (f - self.s.naphtha_flow - self.s.kerosene_flow - self.s.diesel_flow).max(0.0);
        self.s.naphtha_t95 = lag(
            self.s.naphtha_t95,
            172.0 + 0.4 * (self.s.outlet_temp - 360.0) - 6.0 * r
                + 8.0 * (self.s.top_pressure - 1.5)
                + 5.0 * self.crude_light,
            300.0,
            dt,
        ) + noise(&mut self.rng, 0.05);
        self.s.power_kw =
            350.0 + 1.6 * f + 40.0 * self.s.sp.reflux_ratio + noise(&mut self.rng, 3.0);

        // --- totals
        let hours = dt / 3600.0;
        self.s.energy_mwh +=
            (self.s.fuel_gas_flow / 3600.0 * LHV / 1000.0 + self.s.power_kw / 1000.0) * hours;
        self.s.fuel_kg += self.s.fuel_gas_flow * hours;
        let light = self.s.naphtha_flow + self.s.kerosene_flow + self.s.diesel_flow;
        self.s.product_m3 += light * hours;
        if self.s.offspec() {
            self.s.offspec_m3 += self.s.naphtha_flow * hours;
        }
        if self.s.state == UnitState::Running {
            self.s.run_hours += hours;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn run(p: &mut Plant, seconds: f64) {
        p.step(seconds);
    }

    #[test]
    fn same_seed_same_trajectory_different_seed_different() {
        let mut a = Plant::new(7);
        let mut b = Plant::new(7);
        let mut c = Plant::new(8);
        for _ in 0..500 {
            a.step(0.7);
            b.step(0.7);
            c.step(0.7);
        }
        assert_eq!(a.snapshot(), b.snapshot());
        assert_ne!(a.snapshot().outlet_temp, c.snapshot().outlet_temp);
    }

    #[test]
    fn starts_at_a_plausible_steady_state() {
        let mut p = Plant::new(1);
        run(&mut p, 1800.0);
        let s = p.snapshot();
        assert_eq!(s.state, UnitState::Running);
        assert!((s.outlet_temp - 360.0).abs() < 3.0, "{}", s.outlet_temp);
        assert!((400.0..=520.0).contains(&s.feed_rate), "{}", s.feed_rate);
        assert!(
            (2000.0..6000.0).contains(&s.fuel_gas_flow),
            "fuel {}",
            s.fuel_gas_flow
        );
        assert!((20.0..70.0).contains(&s.duty_mw), "duty {}", s.duty_mw);
        let sum = s.naphtha_flow + s.kerosene_flow + s.diesel_flow + s.residue_flow;
        assert!((sum - s.feed_rate).abs() < 1e-6, "mass balance");
    }

    #[test]
    fn outlet_setpoint_moves_temperature_and_fuel_up() {
        let mut p = Plant::new(2);
        run(&mut p, 900.0);
        let before = p.snapshot().clone();
        p.set(SetpointId::OutletTemp, 375.0).unwrap();
        run(&mut p, 60.0);
        assert!(
            p.snapshot().fuel_gas_flow > before.fuel_gas_flow,
            "fuel responds first"
        );
        run(&mut p, 1800.0);
        let after = p.snapshot();
        assert!(
            (after.outlet_temp - 375.0).abs() < 3.0,
            "{}",
            after.outlet_temp
        );
        assert!(after.fuel_gas_flow > before.fuel_gas_flow * 1.05);
        assert!(
            after.naphtha_t95 > before.naphtha_t95,
            "hotter cut point, heavier naphtha"
        );
    }

    #[test]
    fn more_feed_needs_more_duty() {
        let mut p = Plant::new(3);
        run(&mut p, 900.0);
        let d0 = p.snapshot().duty_mw;
        p.set(SetpointId::FeedRate, 650.0).unwrap();
        run(&mut p, 3600.0);
        assert!(
            p.snapshot().duty_mw > d0 * 1.15,
            "{} vs {d0}",
            p.snapshot().duty_mw
        );
    }

    #[test]
    fn setpoints_are_range_checked() {
        let mut p = Plant::new(4);
        assert_eq!(p.set(SetpointId::OutletTemp, 500.0), Err((330.0, 385.0)));
        assert!(p.set(SetpointId::RefluxRatio, 0.5).is_err());
        assert_eq!(p.snapshot().sp, Setpoints::default());
    }

    #[test]
    fn stop_start_and_fault_reset_cycle() {
        let mut p = Plant::new(5);
        p.set_run(false);
        run(&mut p, 1.0);
        assert_eq!(p.snapshot().state, UnitState::Stopped);
        run(&mut p, 3600.0);
        assert!(p.snapshot().feed_rate < 5.0);
        assert!(p.snapshot().fuel_gas_flow < 1.0);
        p.set_run(true);
        run(&mut p, 1.0);
        assert_eq!(p.snapshot().state, UnitState::Starting);
        run(&mut p, 4.0 * 3600.0);
        assert_eq!(p.snapshot().state, UnitState::Running);
        let trips = p.snapshot().trips;
        p.trip(101);
        assert_eq!(
            (p.snapshot().state, p.snapshot().fault_code),
            (UnitState::Fault, 101)
        );
        assert_eq!(p.snapshot().trips, trips + 1);
        run(&mut p, 120.0);
        p.reset_fault();
        run(&mut p, 2.0); // fault → stopped, then the run command restarts it
        assert_eq!(
            p.snapshot().state,
            UnitState::Starting,
            "reset, and the run command restarts it"
        );
    }

    #[test]
    fn totals_only_grow_and_run_hours_track_running_time() {
        let mut p = Plant::new(6);
        let mut last = p.snapshot().clone();
        for _ in 0..48 {
            run(&mut p, 3600.0);
            let s = p.snapshot();
            assert!(
                s.energy_mwh > last.energy_mwh
                    && s.product_m3 > last.product_m3
                    && s.fuel_kg > last.fuel_kg
            );
            assert!(s.run_hours >= last.run_hours && s.offspec_m3 >= last.offspec_m3);
            last = s.clone();
        }
        assert!(last.run_hours <= 48.0 + 1e-9);
        // ~9,500 m³/day of light products at 500 m³/h × ~0.55 yield... plus shifts.
        assert!(
            (10_000.0..14_000.0).contains(&last.product_m3),
            "{}",
            last.product_m3
        );
    }

    #[test]
    fn daily_and_shift_patterns_are_visible() {
        let mut p = Plant::new(9);
        // Sample ambient at 15:00 and 03:00 over a few days.
        let mut warm = 0.0;
        let mut cold = 0.0;
        let mut day_feed = 0.0;
        let mut night_feed = 0.0;
        run(&mut p, 9.0 * 3600.0); // to 15:00 Monday
        for _ in 0..3 {
            warm += p.snapshot().ambient_temp;
            day_feed += p.snapshot().feed_rate;
            run(&mut p, 12.0 * 3600.0); // 03:00
            cold += p.snapshot().ambient_temp;
            night_feed += p.snapshot().feed_rate;
            run(&mut p, 12.0 * 3600.0);
        }
        assert!(warm > cold + 15.0, "afternoons warmer: {warm} vs {cold}");
        assert!(day_feed > night_feed, "night shift runs slower");
    }
}
