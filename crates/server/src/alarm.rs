//! Alarms (etcd's alarm store): conditions raised by a member that change what the cluster
//! accepts. NOSPACE, raised when the backend passes `--quota-backend-bytes`, stops writes that
//! would grow it until an operator frees space and disarms the alarm. Alarms travel through
//! Raft, so every member agrees on them; they live in the backend's `alarm` table.

use std::collections::BTreeSet;
use std::sync::Mutex;

use oxcd_api::etcdserverpb::{AlarmMember, AlarmType};
use oxcd_storage::schema;
use redb::{ReadableTable, WriteTransaction};

use crate::error::ServerError;

/// The active alarms, as (member id, alarm type) pairs.
#[derive(Default)]
pub struct Alarms {
    active: Mutex<BTreeSet<(u64, i32)>>,
}

fn key(member: u64, alarm: i32) -> [u8; 12] {
    let mut k = [0u8; 12];
    k[..8].copy_from_slice(&member.to_be_bytes());
    k[8..].copy_from_slice(&alarm.to_be_bytes());
    k
}

impl Alarms {
    /// Loads the alarms stored in the backend.
    pub fn load(backend: &oxcd_storage::Backend) -> Result<Alarms, ServerError> {
        let rtx = backend.begin_read()?;
        let mut active = BTreeSet::new();
        for row in rtx.open_table(schema::ALARM)?.iter()? {
            let (k, _) = row?;
            let k = k.value();
            if k.len() == 12 {
                let member = u64::from_be_bytes(k[..8].try_into().unwrap());
                let alarm = i32::from_be_bytes(k[8..].try_into().unwrap());
                active.insert((member, alarm));
            }
        }
        Ok(Alarms {
            active: Mutex::new(active),
        })
    }

    /// Raises an alarm (apply only).
    pub fn activate(
        &self,
        tx: &WriteTransaction,
        member: u64,
        alarm: i32,
    ) -> Result<(), ServerError> {
        tx.open_table(schema::ALARM)?
            .insert(key(member, alarm).as_slice(), [].as_slice())?;
        self.active.lock().unwrap().insert((member, alarm));
        Ok(())
    }

    /// Clears an alarm (apply only).
    pub fn deactivate(
        &self,
        tx: &WriteTransaction,
        member: u64,
        alarm: i32,
    ) -> Result<(), ServerError> {
        tx.open_table(schema::ALARM)?
            .remove(key(member, alarm).as_slice())?;
        self.active.lock().unwrap().remove(&(member, alarm));
        Ok(())
    }

    /// Every active alarm, or those of one type.
    pub fn list(&self, only: Option<i32>) -> Vec<AlarmMember> {
        self.active
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, a)| only.is_none_or(|o| o == *a))
            .map(|&(member_id, alarm)| AlarmMember { member_id, alarm })
            .collect()
    }

    /// Whether the cluster is out of space: writes that grow the backend are refused.
    pub fn no_space(&self) -> bool {
        self.active
            .lock()
            .unwrap()
            .iter()
            .any(|(_, a)| *a == AlarmType::Nospace as i32)
    }

    /// Whether a corruption check found members that disagree: writes are refused.
    pub fn corrupt(&self) -> bool {
        self.active
            .lock()
            .unwrap()
            .iter()
            .any(|(_, a)| *a == AlarmType::Corrupt as i32)
    }

    /// Reloads from the backend (after a snapshot replaced it).
    pub fn reload(&self, backend: &oxcd_storage::Backend) -> Result<(), ServerError> {
        let fresh = Alarms::load(backend)?;
        *self.active.lock().unwrap() = fresh.active.into_inner().unwrap();
        Ok(())
    }

    /// The alarms as Maintenance.Status lists them ("memberID:… alarm:NOSPACE ").
    pub fn status_errors(&self) -> Vec<String> {
        self.list(None)
            .into_iter()
            .map(|a| {
                let name = AlarmType::try_from(a.alarm)
                    .map(|t| t.as_str_name())
                    .unwrap_or("UNKNOWN");
                format!("memberID:{} alarm:{} ", a.member_id, name)
            })
            .collect()
    }
}
