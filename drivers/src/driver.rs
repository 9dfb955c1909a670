//! The one driver loop every machine runs under: drain outputs, take what is due already (a stop, an
//! expired timer, a confirmation, a queued input), else arm one timer and wait for the first of
//! timer / socket input / room for a held item / a consumer's progress / shutdown, feed it, repeat.
//!
//! Items go into the hub through the source's delivery [`Lane`]. While a back-pressure consumer
//! is full the lane holds the item and the loop stops taking socket and HTTP input (TCP pushes
//! back on the peer), telling the machine with `Input::ReadingPaused` so that deadlines waiting on
//! the peer stand still; timers, sends (heartbeats, pings, acks) and stop requests go on.

use crate::clock::Clock;
use crate::delivery::Lane;
use crate::http::HttpClient;
use crate::hub::Hub;
use crate::lock::lock;
use crate::record::Recorder;
use crate::serve::{
    Flushed, HANDED_OFF, HandedOff, HandoffHandler, Listener, StreamCommand, Streams,
};
use crate::ws::{self, WsCommand, WsSettings};
use openflume_proto::http::ReceivedRequest;
use openflume_proto::{
    Checkpoint, ConnId, DeliveryId, Input, Item, Level, Log, Machine, Millis, Now, Output, ReqId,
    Status,
};
use smol::Task;
use smol::channel::{Receiver, Sender};
use std::borrow::Cow;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Frames queued for one connection before the driver gives up on it: a full queue means the
/// socket is stuck. The machines rate-limit their own frames far below this, but one consumer
/// commit can release a whole backlog of Slack acks at once (up to the machine's 1 024 pending).
const OUTBOUND_QUEUE: usize = 2048;
/// Inputs queued from socket and HTTP tasks; a full queue makes readers wait (TCP back-pressure).
const INPUT_QUEUE: usize = 64;
/// A wake later than this after a deadline is reported: a blocked loop delays heartbeats.
const LATE_WAKE_MS: u64 = 1000;

/// Everything a driver needs besides its machine.
#[derive(Clone)]
pub(crate) struct DriverEnv {
    pub(crate) hub: Hub,
    pub(crate) http: HttpClient,
    pub(crate) ws: WsSettings,
    pub(crate) clock: Clock,
    /// How long a shutting-down machine gets to finish its close handshakes.
    pub(crate) shutdown_grace: Duration,
    /// Records every input fed to the machine, when recording (`listen --record`).
    pub(crate) recorder: Option<Recorder>,
    /// The source's Discord identify gate, when its shards ask one.
    pub(crate) identify_gate: Option<Arc<dyn crate::IdentifyGate>>,
}

/// Hands a gate's holds to shard `shard` as `Input::IdentifyWaiting`, its wait placed on the
/// machine's clock; never blocks the gate (a full input queue drops the word).
fn hold_reporter(inputs: Sender<Input>, clock: Clock, shard: u32) -> crate::identify::HoldReporter {
    use crate::identify::Hold;
    use openflume_proto::discord::IdentifyWait;
    crate::identify::HoldReporter::new(move |hold| {
        let wait_ms = u64::try_from(hold.wait().as_millis()).unwrap_or(u64::MAX);
        let until = clock.mono() + wait_ms;
        let wait = match hold {
            Hold::SessionStartLimit { .. } => IdentifyWait::Budget { until },
            _ => IdentifyWait::Bucket { until },
        };
        let _ = inputs.try_send(Input::IdentifyWaiting { shard, wait });
    })
}

/// How a running source is asked to stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct StopRequest {
    pub(crate) keep_session: bool,
}

/// The live status of one source, shared with `Running::statuses`.
pub(crate) type StatusCell = Arc<Mutex<LiveStatus>>;

/// A source's status and reason, and its parts' (a Discord gateway's shards).
#[derive(Clone, Debug, Default)]
pub(crate) struct LiveStatus {
    pub(crate) status: Status,
    pub(crate) reason: Option<String>,
    /// In the order the parts first reported.
    pub(crate) parts: Vec<crate::PartStatus>,
}

/// Sockets and requests in flight for one machine.
struct Io {
    env: DriverEnv,
    inputs_tx: Sender<Input>,
    connections: HashMap<ConnId, (Sender<WsCommand>, Task<()>)>,
    /// Connections whose handshake completed.
    opened: HashSet<ConnId>,
    requests: HashMap<ReqId, Task<()>>,
    /// Served connections (a machine that serves), and the task accepting them until a stop.
    streams: Streams,
    accepting: Option<Task<()>>,
    flushed: Option<Flushed>,
    /// Serves what the machine hands off (none: handed-off connections are closed).
    handoff: Option<HandoffHandler>,
    /// Connections handed off whose task has not given its stream back yet: the request, the
    /// bytes read after it so far, and where the stream will come.
    handing_off: HashMap<ConnId, PendingHandoff>,
    /// Inputs the driver itself produced during a drain (stuck sockets), fed after the drain,
    /// one at a time.
    synthesized: Vec<Input>,
    changed: Arc<event_listener::Event>,
    lane: Lane,
    /// A stop was requested: read on even while an item waits, to finish the close handshakes.
    stopping: bool,
}

/// A handoff waiting for its connection task's last chunks and its stream.
struct PendingHandoff {
    request: ReceivedRequest,
    leftover: Vec<u8>,
    stream: Receiver<async_io::Async<std::net::TcpStream>>,
}

/// Runs `machine`, the source named `source`, until it finishes, or until `stop` fires and it
/// has shut down (or the grace ran out). Every item it produces carries `source` as its source.
pub(crate) async fn drive(
    source: Cow<'static, str>,
    mut machine: Box<dyn Machine + Send>,
    env: DriverEnv,
    stop: Receiver<StopRequest>,
    status: StatusCell,
    changed: Arc<event_listener::Event>,
    listener: Option<Listener>,
) -> Option<Checkpoint> {
    let (inputs_tx, inputs_rx) = smol::channel::bounded(INPUT_QUEUE);
    let clock = env.clock;
    // Items the machine makes in its own name carry the source's name; those it makes for
    // another source (the webhook ingress's Slack and GitHub events) keep theirs.
    let own = machine.source().to_owned();
    let streams = Streams::default();
    let listening = listener.as_ref().and_then(|l| l.local_addr().ok());
    let handoff = listener.as_ref().and_then(Listener::handoff);
    let (accepting, flushed) = listener
        .map(|l| l.serve(streams.clone(), inputs_tx.clone()))
        .unzip();
    let mut io = Io {
        lane: Lane::new(env.hub.clone(), &source),
        env,
        inputs_tx,
        connections: HashMap::new(),
        opened: HashSet::new(),
        requests: HashMap::new(),
        streams,
        accepting,
        flushed,
        handoff,
        handing_off: HashMap::new(),
        synthesized: Vec::new(),
        changed: changed.clone(),
        stopping: false,
    };
    if let Some(addr) = listening {
        io.log(
            Level::Info,
            &source,
            "listening",
            format!("listening on http://{addr}"),
        );
    }
    let mut pending = VecDeque::from([Input::Start]);
    let mut stop_deadline = None;
    let mut alarm = Alarm::default();
    let mut now = clock.now();
    // Whether the machine was told that reading is paused.
    let mut paused = false;
    loop {
        // Feed queued inputs one at a time, draining after each (the drain rule).
        while let Some(input) = pending.pop_front() {
            io.forget_finished(&input);
            now = clock.now();
            if let Some(recorder) = &io.env.recorder
                && let Some(warning) = recorder.record(now, &input)
            {
                io.deliver(Item::Log(warning), None);
            }
            if let Err(misuse) = machine.handle_input(now, input) {
                io.log(
                    Level::Error,
                    &source,
                    "driver.misuse",
                    format!("driver bug: {misuse}"),
                );
                break;
            }
            while let Some(output) = machine.poll_output() {
                io.perform(&source, &own, output, now, &status);
            }
            pending.extend(io.synthesized.drain(..));
        }
        if machine.is_finished() {
            // Nothing can be acknowledged any more: only the deliveries are left.
            io.lane.forget_receipts();
            if !io.lane.is_busy() {
                break;
            }
        } else {
            io.lane.settled(&mut pending);
            let hold = io.holds_back();
            if hold != paused {
                paused = hold;
                pending.push_back(if hold {
                    Input::ReadingPaused
                } else {
                    Input::ReadingResumed
                });
            }
            if !pending.is_empty() {
                continue;
            }
        }
        let reading = !io.holds_back() && !machine.is_finished();
        let deadline = machine.poll_timeout();
        // Every wake queues an input, so `now` was read at the latest one.
        let next = match ready(
            now.mono,
            deadline,
            stop_deadline,
            reading,
            &inputs_rx,
            &stop,
        ) {
            Some(wake) => wake,
            None => {
                // Going idle: the consumers learn of what came meanwhile.
                io.lane.announce();
                let deadline = deadline.map(|at| (at, &mut alarm));
                let waits = Waits {
                    clock: &clock,
                    deadline,
                    stop_deadline,
                    inputs: reading.then_some(&inputs_rx),
                    stop: &stop,
                    lane: &io.lane,
                };
                waits.first().await
            }
        };
        match next {
            Wake::Input(input) => {
                if let Some(input) = io.handoff_input(input) {
                    pending.push_back(input);
                }
            }
            Wake::Timer { late_ms } => {
                if late_ms > LATE_WAKE_MS {
                    io.log(
                        Level::Warn,
                        &source,
                        "driver.late",
                        format!("timer fired {late_ms} ms late: the event loop was blocked"),
                    );
                }
                pending.push_back(Input::Timer);
            }
            Wake::Stop(request) => {
                stop_deadline = Some(clock.now().mono + io.env.shutdown_grace.as_millis() as u64);
                io.stopping = true;
                io.accepting = None;
                // A machine that ended by itself only has its deliveries left to finish.
                if !machine.is_finished() {
                    pending.push_back(Input::Shutdown {
                        keep_session: request.keep_session,
                    });
                }
            }
            Wake::Room => io.lane.advance(),
            Wake::Progress => {}
            Wake::GraceOver => {
                io.log(
                    Level::Warn,
                    &source,
                    "driver.shutdown.timeout",
                    "shutdown grace period over; dropping connections",
                );
                break;
            }
        }
    }
    if let Some(log) = io.lane.abandon(&source, clock.now().wall) {
        io.lane.last_word(log);
    }
    // A machine that finished may have queued close frames in the same step (Slack closes and
    // finishes at once): let those connections complete their close handshake, within the grace
    // period. Closing the command channels ends every other connection at once.
    drop(inputs_rx);
    io.requests.clear();
    io.accepting = None;
    lock(&io.streams).clear();
    let closing: Vec<Task<()>> = io
        .connections
        .drain()
        .map(|(_, (commands, task))| {
            drop(commands);
            task
        })
        .collect();
    if let Some(flushed) = io.flushed.take() {
        // The served connections write their last answers (closing the queues above ends the
        // others): the process may exit once this returns.
        futures_lite::future::or(
            async {
                let _ = flushed.recv().await;
            },
            async {
                async_io::Timer::after(io.env.shutdown_grace).await;
            },
        )
        .await;
    }
    if machine.is_finished() {
        let grace = io.env.shutdown_grace;
        futures_lite::future::or(
            async {
                for task in closing {
                    task.await;
                }
            },
            async {
                async_io::Timer::after(grace).await;
            },
        )
        .await;
    }
    {
        // A machine cut off by the grace period never reported its end: record one.
        let mut cell = lock(&status);
        if !cell.status.is_terminal() {
            cell.status = Status::Disconnected;
        }
    }
    changed.notify(usize::MAX);
    machine.checkpoint()
}

enum Wake {
    Input(Input),
    Timer {
        late_ms: u64,
    },
    Stop(StopRequest),
    /// The held item may fit now.
    Room,
    /// A consumer took or committed items: a receipt may have settled.
    Progress,
    GraceOver,
}

/// What is due already, without waiting: the grace period's end, a stop request, an expired
/// timer, then a queued input (when `reading`). Checking these first keeps a steady stream of
/// frames from starving the timers (heartbeats) and a stop request, and spares building the
/// wait's futures for every frame of a burst.
fn ready(
    now: Millis,
    deadline: Option<Millis>,
    stop_deadline: Option<Millis>,
    reading: bool,
    inputs: &Receiver<Input>,
    stop: &Receiver<StopRequest>,
) -> Option<Wake> {
    match stop_deadline {
        Some(at) if now >= at => return Some(Wake::GraceOver),
        Some(_) => {}
        None => match stop.try_recv() {
            Ok(request) => return Some(Wake::Stop(request)),
            Err(smol::channel::TryRecvError::Closed) => {
                return Some(Wake::Stop(StopRequest {
                    keep_session: false,
                }));
            }
            Err(smol::channel::TryRecvError::Empty) => {}
        },
    }
    if let Some(at) = deadline
        && now >= at
    {
        return Some(Wake::Timer { late_ms: now - at });
    }
    if !reading {
        return None;
    }
    inputs.try_recv().ok().map(Wake::Input)
}

/// The machine's deadline as one reactor timer kept across waits. Registering a timer wakes the
/// thread polling the reactor, so a new timer on every wait cost a cross-thread wake-up each
/// time a burst of frames ran dry; the deadline itself changes rarely (once a heartbeat).
struct Alarm {
    timer: async_io::Timer,
    /// The deadline the timer is set for, until it fires.
    armed: Option<Millis>,
}

impl Default for Alarm {
    fn default() -> Self {
        Alarm {
            timer: async_io::Timer::never(),
            armed: None,
        }
    }
}

impl Alarm {
    /// Resolves at `at`.
    async fn at(&mut self, clock: &Clock, at: Millis) {
        if self.armed != Some(at) {
            self.timer.set_at(clock.instant_at(at));
            self.armed = Some(at);
        }
        (&mut self.timer).await;
        // A fired one-shot timer never fires again: the next wait sets it anew.
        self.armed = None;
    }
}

/// Everything one wait races: the machine's deadline, the grace period, a stop request, socket
/// and HTTP input (`None` while reading is held back), room for the held item and a
/// consumer's progress.
struct Waits<'a> {
    clock: &'a Clock,
    deadline: Option<(Millis, &'a mut Alarm)>,
    stop_deadline: Option<Millis>,
    inputs: Option<&'a Receiver<Input>>,
    stop: &'a Receiver<StopRequest>,
    lane: &'a Lane,
}

impl Waits<'_> {
    async fn first(self) -> Wake {
        let Waits {
            clock,
            deadline,
            stop_deadline,
            inputs,
            stop,
            lane,
        } = self;
        let timer = async {
            match deadline {
                Some((at, alarm)) => {
                    alarm.at(clock, at).await;
                    Wake::Timer {
                        late_ms: clock.now().mono - at,
                    }
                }
                None => futures_lite::future::pending().await,
            }
        };
        let grace = async {
            match stop_deadline {
                Some(at) => {
                    async_io::Timer::at(clock.instant_at(at)).await;
                    Wake::GraceOver
                }
                None => futures_lite::future::pending().await,
            }
        };
        let stopping = stop_deadline.is_some();
        let stop_requested = async {
            match stop.recv().await {
                Ok(request) if !stopping => Wake::Stop(request),
                // Already stopping, or every handle is gone (treated as a plain stop once).
                _ if !stopping => Wake::Stop(StopRequest {
                    keep_session: false,
                }),
                _ => futures_lite::future::pending().await,
            }
        };
        // Inputs first: a frame that is already here is handled before a timer that is also due.
        let input = async {
            match inputs {
                Some(inputs) => match inputs.recv().await {
                    Ok(input) => Wake::Input(input),
                    // Cannot happen while `Io` holds a sender; wait for the other arms.
                    Err(_) => futures_lite::future::pending().await,
                },
                None => futures_lite::future::pending().await,
            }
        };
        let room = async {
            lane.writable().await;
            Wake::Room
        };
        let progress = async {
            lane.progressed().await;
            Wake::Progress
        };
        use futures_lite::future::or;
        or(
            or(input, room),
            or(or(stop_requested, progress), or(timer, grace)),
        )
        .await
    }
}

impl Io {
    /// Carries out one output of the input handled at `now`.
    // The `Cow` itself, not a `&str`: cloning it keeps a built-in name borrowed, so stamping
    // the name on an item allocates nothing.
    #[allow(clippy::ptr_arg)]
    fn perform(
        &mut self,
        source: &Cow<'static, str>,
        own: &str,
        output: Output,
        now: Now,
        status: &StatusCell,
    ) {
        match output {
            Output::Connect { conn, url } => {
                let (commands_tx, commands_rx) = smol::channel::bounded(OUTBOUND_QUEUE);
                let task = smol::spawn(ws::run(
                    conn,
                    url,
                    self.env.ws.clone(),
                    self.env.clock,
                    commands_rx,
                    self.inputs_tx.clone(),
                ));
                self.connections.insert(conn, (commands_tx, task));
            }
            Output::Send { conn, frame } => match ws::message(frame) {
                Some(message) => self.command(source, conn, WsCommand::Send(message)),
                // A frame kind newer than this driver (`Frame` is `#[non_exhaustive]`): nothing
                // here can put it on the wire, so say so instead of sending something else.
                None => self.log(
                    Level::Warn,
                    source,
                    "driver.unknown_frame",
                    format!("a frame this driver cannot send, for connection {}", conn.0),
                ),
            },
            Output::Close { conn, code, reason } => {
                self.command(source, conn, WsCommand::Close { code, reason })
            }
            Output::Request { req, request } => {
                let http = self.env.http.clone();
                let inputs = self.inputs_tx.clone();
                let task = smol::spawn(async move {
                    let input = match http.send(request).await {
                        Ok(response) => Input::Response { req, response },
                        Err(error) => Input::RequestFailed {
                            req,
                            error: error.to_string(),
                        },
                    };
                    let _ = inputs.send(input).await;
                });
                self.requests.insert(req, task);
            }
            Output::Transmit { conn, bytes } => {
                let sent = lock(&self.streams)
                    .get(&conn)
                    .map(|commands| commands.try_send(StreamCommand::Write(bytes)).is_ok());
                if sent == Some(false) {
                    // The client does not read its answers: drop it and tell the machine.
                    lock(&self.streams).remove(&conn);
                    self.synthesized.push(Input::Closed {
                        conn,
                        code: None,
                        reason: "client does not read its responses".into(),
                    });
                }
            }
            Output::Hangup { conn } => {
                if let Some(commands) = lock(&self.streams).remove(&conn) {
                    // A full queue drops the sender instead, which closes the connection too.
                    let _ = commands.try_send(StreamCommand::Hangup);
                }
            }
            Output::Handoff {
                conn,
                request,
                leftover,
            } => self.hand_off(conn, request, leftover.0),
            Output::Emit { mut event, confirm } => {
                if event.source != *source && event.source == own {
                    event.source = source.clone();
                }
                self.deliver(Item::Event(event), confirm)
            }
            Output::Log(mut log) => {
                if log.source != *source && log.source == own {
                    log.source = source.to_string();
                }
                self.lane.meters().log(&log);
                self.deliver(Item::Log(log), None)
            }
            Output::Status(change) => {
                // The status is live at once; its log takes its turn in the lane.
                {
                    let mut cell = lock(status);
                    cell.status = change.to;
                    cell.reason.clone_from(&change.reason);
                }
                self.changed.notify(usize::MAX);
                self.lane.meters().status(change.to);
                let log = change.to_log(source, now.wall);
                self.deliver(Item::Log(log), None);
            }
            Output::Checkpoint(checkpoint) => self.lane.checkpoint(source, checkpoint),
            // A shard's status: kept beside the source's (the machine logs it itself).
            Output::PartStatus {
                part,
                status: to,
                reason,
            } => {
                let mut cell = lock(status);
                match cell.parts.iter_mut().find(|p| p.part == part) {
                    Some(known) => (known.status, known.reason) = (to, reason),
                    None => cell.parts.push(crate::PartStatus {
                        part,
                        status: to,
                        reason,
                    }),
                }
                drop(cell);
                self.changed.notify(usize::MAX);
            }
            // A shard with an external identify queue asks: the gate's grant comes back as an
            // input, and so does its word on why the shard waits. Without a gate, say so loudly
            // rather than let the shard wait unseen.
            Output::IdentifyRequest(request) => match self.env.identify_gate.as_ref() {
                Some(gate) => {
                    let shard = request.shard_id;
                    let holds = hold_reporter(self.inputs_tx.clone(), self.env.clock, shard);
                    let grant = gate.grant(request, holds);
                    let inputs = self.inputs_tx.clone();
                    // Ends with the driver's input channel if the source stops first.
                    smol::spawn(async move {
                        grant.await;
                        let _ = inputs.send(Input::IdentifyGranted { shard }).await;
                    })
                    .detach();
                }
                None => self.log(
                    Level::Error,
                    source,
                    "identify.no_queue",
                    format!(
                        "shard {}/{} asks an external identify queue, but none is configured: it will not identify",
                        request.shard_id, request.shard_count
                    ),
                ),
            },
            // An output newer than this driver (`Output` is `#[non_exhaustive]`, so a new
            // protocol feature does not break the build of every driver). Ignoring it is the
            // safe reading: an output this loop cannot carry out is one it was never asked for,
            // and the machine's own logs and timers go on. A debug line keeps it visible.
            other => self.log(
                Level::Debug,
                source,
                "driver.unknown_output",
                format!("ignored an output this driver does not know: {other:?}"),
            ),
        }
    }

    fn command(&mut self, source: &str, conn: ConnId, command: WsCommand) {
        let Some((commands, _)) = self.connections.get(&conn) else {
            self.log(
                Level::Debug,
                source,
                "driver.stale",
                format!("{command:?} for connection {} that is gone", conn.0),
            );
            return;
        };
        if commands.try_send(command).is_err() {
            // The socket is not draining its queue: give up on it and tell the machine.
            self.connections.remove(&conn);
            self.synthesized.push(Input::Closed {
                conn,
                code: None,
                reason: format!("outbound queue of {OUTBOUND_QUEUE} frames full: socket stuck"),
            });
        }
    }

    /// Drops the handles of connections and requests that `input` reports as over.
    /// Takes `conn` back from its connection task for the listener's handoff handler.
    fn hand_off(&mut self, conn: ConnId, request: ReceivedRequest, leftover: Vec<u8>) {
        let Some(commands) = lock(&self.streams).remove(&conn) else {
            return;
        };
        if self.handoff.is_none() {
            // Nobody serves it: dropping the queue closes the connection.
            return;
        }
        let (reply, stream) = smol::channel::bounded(1);
        if commands.try_send(StreamCommand::Handoff(reply)).is_ok() {
            self.handing_off.insert(
                conn,
                PendingHandoff {
                    request,
                    leftover,
                    stream,
                },
            );
        }
    }

    /// Keeps the chunks of a connection being handed off (read after its request, so they
    /// belong after its leftover bytes) away from the machine, and at the task's marker gives
    /// the stream to the handler. Other input is returned to be fed.
    fn handoff_input(&mut self, input: Input) -> Option<Input> {
        match input {
            Input::Received { conn, bytes } if self.handing_off.contains_key(&conn) => {
                if let Some(pending) = self.handing_off.get_mut(&conn) {
                    pending.leftover.extend_from_slice(bytes.as_slice());
                }
                None
            }
            Input::Closed { conn, reason, .. } if self.handing_off.contains_key(&conn) => {
                let pending = self.handing_off.remove(&conn)?;
                let handler = self.handoff.clone();
                if reason == HANDED_OFF
                    && let Some(handler) = handler
                {
                    smol::spawn(async move {
                        // No stream if the client went away first.
                        if let Ok(stream) = pending.stream.recv().await {
                            handler(HandedOff {
                                stream,
                                request: pending.request,
                                leftover: pending.leftover,
                            });
                        }
                    })
                    .detach();
                }
                None
            }
            other => Some(other),
        }
    }

    fn forget_finished(&mut self, input: &Input) {
        match input {
            Input::Opened { conn } => {
                self.opened.insert(*conn);
            }
            Input::Closed { conn, .. } | Input::ConnectFailed { conn, .. } => {
                self.connections.remove(conn);
                self.opened.remove(conn);
                lock(&self.streams).remove(conn);
            }
            Input::Response { req, .. } | Input::RequestFailed { req, .. } => {
                self.requests.remove(req);
            }
            _ => {}
        }
    }

    /// True while input must wait: an item waits for room, and no shutdown needs the input to
    /// finish its close handshakes.
    fn holds_back(&self) -> bool {
        self.lane.is_blocked() && !self.stopping
    }

    fn deliver(&mut self, item: Item, confirm: Option<DeliveryId>) {
        if self.stopping {
            self.lane.deliver_while_stopping(item, confirm);
        } else {
            self.lane.deliver(item, confirm);
        }
    }

    fn log(&mut self, level: Level, source: &str, action: &str, message: impl Into<String>) {
        let log = Log::new(level, source, action, message, self.env.clock.now().wall);
        self.deliver(Item::Log(log), None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A channel holding `items`, with its sender kept open (a closed input channel is never a
    /// wake of its own).
    fn channel<T>(items: impl IntoIterator<Item = T>) -> (Sender<T>, Receiver<T>) {
        let (tx, rx) = smol::channel::unbounded();
        for item in items {
            tx.try_send(item).unwrap();
        }
        (tx, rx)
    }

    fn name(wake: Option<Wake>) -> &'static str {
        match wake {
            None => "nothing",
            Some(Wake::Input(_)) => "input",
            Some(Wake::Timer { .. }) => "timer",
            Some(Wake::Stop(_)) => "stop",
            Some(Wake::Room) => "room",
            Some(Wake::Progress) => "progress",
            Some(Wake::GraceOver) => "grace over",
        }
    }

    /// One timer serves every wait for the same deadline, and a fired one is set anew rather
    /// than awaited forever.
    #[test]
    fn an_alarm_fires_at_its_deadline_however_often_it_is_awaited() {
        smol::block_on(async {
            let clock = Clock::new();
            let mut alarm = Alarm::default();
            let at = clock.now().mono + 30;
            let give_up = || async {
                async_io::Timer::after(Duration::from_secs(5)).await;
                panic!("the alarm never fired");
            };
            // A wait cut short by another wake leaves the timer armed.
            let cut_short = futures_lite::future::or(
                async {
                    alarm.at(&clock, at).await;
                    false
                },
                async { true },
            )
            .await;
            assert!(cut_short);
            assert_eq!(alarm.armed, Some(at));
            futures_lite::future::or(alarm.at(&clock, at), give_up()).await;
            assert!(clock.now().mono >= at);
            assert_eq!(alarm.armed, None);
            // The same deadline again (a machine that found nothing to do yet): still fires.
            futures_lite::future::or(alarm.at(&clock, at), give_up()).await;
        });
    }

    /// A burst of frames must not keep a due timer (the heartbeat) or a stop request waiting.
    #[test]
    fn due_timers_and_stops_come_before_queued_inputs() {
        let now = Millis(1000);
        let due = Some(Millis(1000));
        let later = Some(Millis(u64::MAX));
        let stop_request = StopRequest { keep_session: true };
        let (_keep_stop, no_stop) = channel(None);
        let (_keep_input, input) = channel([Input::Timer, Input::Timer, Input::Timer]);
        let (_keep_empty, empty) = channel(None);

        assert_eq!(name(ready(now, due, None, true, &input, &no_stop)), "timer");
        assert_eq!(
            name(ready(now, later, None, true, &input, &no_stop)),
            "input"
        );
        assert_eq!(
            name(ready(now, None, None, true, &empty, &no_stop)),
            "nothing"
        );
        let (_keep_stop, stop) = channel(Some(stop_request));
        assert_eq!(name(ready(now, due, None, true, &input, &stop)), "stop");
        let (gone, stop) = channel(None);
        drop(gone);
        assert_eq!(name(ready(now, None, None, true, &input, &stop)), "stop");
        // Once stopping, the stop channel is not read again; the grace period's end comes first.
        assert_eq!(name(ready(now, due, later, true, &input, &stop)), "timer");
        assert_eq!(
            name(ready(now, due, due, true, &input, &stop)),
            "grace over"
        );
        // Held back for a full consumer: queued input waits, timers do not.
        let (_keep_stop, no_stop) = channel(None);
        assert_eq!(
            name(ready(now, later, None, false, &input, &no_stop)),
            "nothing"
        );
        assert_eq!(
            name(ready(now, due, None, false, &input, &no_stop)),
            "timer"
        );
    }
}
