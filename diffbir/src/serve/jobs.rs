//! Jobs: their unguessable ids, their state as clients see it, the bounded queue the workers
//! take them from, and the registry that forgets them after their time to live.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use diffbir::pipeline::PipelineConfig;
use serde::Serialize;
use tokio::sync::watch;

/// 128 random bits, written as 32 lowercase hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct JobId([u8; 16]);

impl JobId {
    /// A fresh random id (from the operating system's generator).
    pub fn random() -> Result<Self, getrandom::Error> {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes)?;
        Ok(Self(bytes))
    }

    /// The id written in `text`, which must be exactly 32 lowercase hex digits.
    pub fn parse(text: &str) -> Option<Self> {
        let digits = text.as_bytes();
        if digits.len() != 32 {
            return None;
        }
        let hex = |c: u8| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        };
        let mut bytes = [0u8; 16];
        for (byte, pair) in bytes.iter_mut().zip(digits.chunks(2)) {
            *byte = hex(pair[0])? << 4 | hex(pair[1])?;
        }
        Some(Self(bytes))
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

diffbir::core::named_enum! {
    /// Where a job is.
    pub enum State ("job state") {
        Queued = "queued",
        Running = "running",
        Done = "done",
        Failed = "failed",
        Cancelled = "cancelled",
    }
}

impl State {
    /// Done, failed or cancelled: nothing changes any more.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Done | Self::Failed | Self::Cancelled)
    }
}

/// Sampler progress of a job (over every part of an `unaligned_face` photo).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Progress {
    /// Steps taken in the current part.
    pub step: usize,
    /// Steps of the current part.
    pub total: usize,
    /// The current part (1-based) and how many there are (`unaligned_face`: each face, then
    /// the background).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub part: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parts: Option<usize>,
    /// The whole job's progress in `[0, 1]`.
    pub fraction: f64,
}

/// Why a job failed.
#[derive(Debug, Clone, Serialize)]
pub struct JobError {
    pub code: &'static str,
    pub message: String,
}

/// What clients see of a job (`GET /v1/jobs/{id}` and every server-sent event).
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    pub id: String,
    pub state: State,
    /// Jobs ahead of this one in the queue (queued jobs only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<usize>,
    pub progress: Progress,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<JobError>,
    pub seed: u64,
    /// Seconds since the Unix epoch.
    pub created: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished: Option<f64>,
    /// The result URLs, once done.
    pub results: Vec<String>,
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// One submitted image and everything about its restoration.
#[derive(Debug)]
pub struct Job {
    pub id: JobId,
    /// The job's settings, validated against the loaded networks.
    pub config: PipelineConfig,
    pub seed: u64,
    /// The uploaded file (taken by the worker) and its name, for the decoder's format guess.
    pub upload: Mutex<Option<Vec<u8>>>,
    pub upload_name: String,
    /// The latest snapshot; server-sent event streams watch it.
    pub snapshot: watch::Sender<Snapshot>,
    /// Set by `DELETE`; the worker's observer stops at the next event.
    pub cancel: AtomicBool,
    /// The result files, written by the worker (only names the server made).
    pub files: Mutex<Files>,
    pub submitted: Instant,
}

/// The files of a finished job.
#[derive(Debug, Default)]
pub struct Files {
    pub samples: Vec<PathBuf>,
    pub stage1: Option<PathBuf>,
}

/// Locks `mutex`, going on with its data when a thread panicked while holding it (every
/// value guarded here stays consistent between statements).
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Job {
    pub fn new(
        id: JobId,
        config: PipelineConfig,
        seed: u64,
        upload: Vec<u8>,
        name: String,
    ) -> Self {
        let snapshot = Snapshot {
            id: id.to_string(),
            state: State::Queued,
            position: None,
            progress: Progress::default(),
            error: None,
            seed,
            created: unix_now(),
            started: None,
            finished: None,
            results: Vec::new(),
        };
        Self {
            id,
            config,
            seed,
            upload: Mutex::new(Some(upload)),
            upload_name: name,
            snapshot: watch::Sender::new(snapshot),
            cancel: AtomicBool::new(false),
            files: Mutex::new(Files::default()),
            submitted: Instant::now(),
        }
    }

    pub fn state(&self) -> State {
        self.snapshot.borrow().state
    }

    pub fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }

    /// Moves the job to a final state once; returns false when it already was in one.
    pub fn finish(&self, state: State, error: Option<JobError>, results: Vec<String>) -> bool {
        self.snapshot.send_if_modified(|s| {
            if s.state.is_final() {
                return false;
            }
            s.state = state;
            s.position = None;
            s.error = error;
            s.results = results;
            s.finished = Some(unix_now());
            if state == State::Done {
                s.progress.fraction = 1.0;
            }
            true
        })
    }

    /// Removes the job's files.
    pub fn remove_files(&self) {
        let mut files = lock(&self.files);
        let stage1 = files.stage1.take();
        for path in files.samples.drain(..).chain(stage1) {
            // A file already gone is what removing wants.
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Why a job could not be queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The queue holds its capacity.
    Full,
    /// The server is shutting down.
    ShuttingDown,
}

/// Every job the server knows and the queue of those waiting, with the workers' wake-up.
#[derive(Debug)]
pub struct Registry {
    jobs: Mutex<HashMap<JobId, Arc<Job>>>,
    queue: Mutex<VecDeque<Arc<Job>>>,
    ready: Condvar,
    capacity: usize,
    closed: AtomicBool,
}

impl Registry {
    /// A registry whose queue holds at most `capacity` waiting jobs.
    pub fn new(capacity: usize) -> Self {
        Self {
            jobs: Mutex::new(HashMap::new()),
            queue: Mutex::new(VecDeque::new()),
            ready: Condvar::new(),
            capacity,
            closed: AtomicBool::new(false),
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Jobs waiting.
    pub fn queued(&self) -> usize {
        lock(&self.queue).len()
    }

    pub fn get(&self, id: JobId) -> Option<Arc<Job>> {
        lock(&self.jobs).get(&id).cloned()
    }

    /// Queues `job`, or refuses it when the queue is full or closed.
    pub fn submit(&self, job: Arc<Job>) -> Result<usize, Refused> {
        let mut queue = lock(&self.queue);
        if self.closed.load(Ordering::Relaxed) {
            return Err(Refused::ShuttingDown);
        }
        if queue.len() >= self.capacity {
            return Err(Refused::Full);
        }
        let position = queue.len();
        job.snapshot.send_modify(|s| s.position = Some(position));
        lock(&self.jobs).insert(job.id, Arc::clone(&job));
        queue.push_back(job);
        self.ready.notify_one();
        Ok(position)
    }

    /// The next job for a worker, waiting for one; `None` once the registry is closed.
    pub fn next(&self) -> Option<Arc<Job>> {
        let mut queue = lock(&self.queue);
        loop {
            if self.closed.load(Ordering::Relaxed) {
                return None;
            }
            if let Some(job) = queue.pop_front() {
                Self::renumber(&queue);
                return Some(job);
            }
            queue = self
                .ready
                .wait_timeout(queue, Duration::from_millis(500))
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Takes a waiting job out of the queue; false when it was not waiting.
    pub fn unqueue(&self, id: JobId) -> bool {
        let mut queue = lock(&self.queue);
        let before = queue.len();
        queue.retain(|job| job.id != id);
        let removed = queue.len() != before;
        if removed {
            Self::renumber(&queue);
        }
        removed
    }

    fn renumber(queue: &VecDeque<Arc<Job>>) {
        for (position, job) in queue.iter().enumerate() {
            job.snapshot
                .send_if_modified(|s| s.position.replace(position) != Some(position));
        }
    }

    /// Forgets `id` and removes its files.
    pub fn remove(&self, id: JobId) -> Option<Arc<Job>> {
        let job = lock(&self.jobs).remove(&id)?;
        job.remove_files();
        Some(job)
    }

    /// Forgets the jobs that finished more than `ttl` ago; returns how many.
    pub fn expire(&self, ttl: Duration) -> usize {
        let deadline = unix_now() - ttl.as_secs_f64();
        let expired: Vec<JobId> = lock(&self.jobs)
            .values()
            .filter(|job| {
                job.snapshot
                    .borrow()
                    .finished
                    .is_some_and(|at| at <= deadline)
            })
            .map(|job| job.id)
            .collect();
        expired
            .iter()
            .filter(|id| self.remove(**id).is_some())
            .count()
    }

    /// Refuses new jobs, cancels the waiting ones and every running one, and wakes the
    /// workers so they stop.
    pub fn close(&self) {
        let waiting: Vec<Arc<Job>> = {
            let mut queue = lock(&self.queue);
            self.closed.store(true, Ordering::Relaxed);
            queue.drain(..).collect()
        };
        for job in waiting {
            job.finish(State::Cancelled, None, Vec::new());
        }
        for job in lock(&self.jobs).values() {
            job.cancel.store(true, Ordering::Relaxed);
        }
        self.ready.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use diffbir::pipeline::{Task, Version};

    fn job() -> Arc<Job> {
        let config = PipelineConfig::new(Task::Sr, Version::V21);
        Arc::new(Job::new(
            JobId::random().unwrap(),
            config,
            1,
            vec![1],
            "a.png".into(),
        ))
    }

    #[test]
    fn ids_are_32_hex_digits_and_nothing_else_parses() {
        let id = JobId::random().unwrap();
        let text = id.to_string();
        assert_eq!(text.len(), 32);
        assert_eq!(JobId::parse(&text), Some(id));
        assert_ne!(JobId::random().unwrap(), id);
        for bad in [
            &text[..31],
            &format!("{text}0"),
            &text.to_uppercase(),
            "..%2F..%2Fetc%2Fpasswd",
            "0123456789abcdef0123456789abcdeg",
            "",
        ] {
            if bad != text {
                assert_eq!(JobId::parse(bad), None, "{bad}");
            }
        }
    }

    #[test]
    fn the_queue_is_bounded_ordered_and_renumbered() {
        let registry = Registry::new(2);
        let (a, b, c) = (job(), job(), job());
        assert_eq!(registry.submit(Arc::clone(&a)), Ok(0));
        assert_eq!(registry.submit(Arc::clone(&b)), Ok(1));
        assert_eq!(registry.submit(Arc::clone(&c)), Err(Refused::Full));
        assert!(registry.get(c.id).is_none());
        assert_eq!(registry.next().map(|j| j.id), Some(a.id));
        assert_eq!(b.snapshot.borrow().position, Some(0));
        assert!(registry.unqueue(b.id));
        assert!(!registry.unqueue(b.id));
        assert_eq!(registry.queued(), 0);
    }

    #[test]
    fn finished_jobs_expire_and_closing_cancels_the_waiting_ones() {
        let registry = Registry::new(4);
        let (a, b) = (job(), job());
        registry.submit(Arc::clone(&a)).unwrap();
        registry.submit(Arc::clone(&b)).unwrap();
        let taken = registry.next().unwrap();
        assert!(taken.finish(State::Done, None, Vec::new()));
        assert!(!taken.finish(State::Failed, None, Vec::new()));
        assert_eq!(registry.expire(Duration::from_secs(3600)), 0);
        assert_eq!(registry.expire(Duration::ZERO), 1);
        assert!(registry.get(a.id).is_none());
        registry.close();
        assert_eq!(b.state(), State::Cancelled);
        assert!(registry.next().is_none());
        assert_eq!(registry.submit(job()), Err(Refused::ShuttingDown));
    }
}
