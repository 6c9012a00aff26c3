//! What one input produced: nothing, one output, or several.

/// What one input produced: nothing, one output, or several.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outputs<T>(Repr<T>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Repr<T> {
    None,
    One(T),
    Many(Vec<T>),
}

impl<T> Outputs<T> {
    /// No output: the input is filtered out (its acknowledgement resolves as
    /// dropped, reason `filtered`).
    pub fn none() -> Self {
        Outputs(Repr::None)
    }

    /// Exactly one output.
    pub fn one(item: T) -> Self {
        Outputs(Repr::One(item))
    }

    /// Any number of outputs (zero is the same as [`Outputs::none`]).
    pub fn many(items: Vec<T>) -> Self {
        Outputs(Repr::Many(items))
    }

    /// How many outputs.
    pub fn len(&self) -> usize {
        match &self.0 {
            Repr::None => 0,
            Repr::One(_) => 1,
            Repr::Many(v) => v.len(),
        }
    }

    /// Whether there is no output.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<T> IntoIterator for Outputs<T> {
    type Item = T;
    type IntoIter = OutputsIter<T>;

    fn into_iter(self) -> Self::IntoIter {
        OutputsIter(match self.0 {
            Repr::None => IterRepr::Done,
            Repr::One(t) => IterRepr::One(Some(t)),
            Repr::Many(v) => IterRepr::Many(v.into_iter()),
        })
    }
}

/// Iterator over [`Outputs`].
#[derive(Debug)]
pub struct OutputsIter<T>(IterRepr<T>);

#[derive(Debug)]
enum IterRepr<T> {
    Done,
    One(Option<T>),
    Many(std::vec::IntoIter<T>),
}

impl<T> Iterator for OutputsIter<T> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        match &mut self.0 {
            IterRepr::Done => None,
            IterRepr::One(t) => t.take(),
            IterRepr::Many(it) => it.next(),
        }
    }
}
